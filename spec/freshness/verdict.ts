import { expect } from "chai";
import type { FreshnessReport } from "./harness";

/** The first violations of a run, with what each read saw and what it should have. */
export function explain(report: FreshnessReport): string {
  const shown = [...report.stale, ...report.dirty]
    .slice(0, 5)
    .map((v) => `${v.kind} ${v.read}: ${v.details.join("; ")}`);
  return [
    `${report.stale.length} stale, ${report.dirty.length} dirty reads`,
    ...shown,
    ...report.readErrors.slice(0, 5),
  ].join("\n");
}

/** A run found no stale and no dirty read, and its history is whole. */
export function expectClean(report: FreshnessReport): void {
  expect(report.unattributed, "every logged write belongs to a recorded operation").to.have.length(
    0,
  );
  expect(report.readErrors, "no cached read threw anything but a database error").to.deep.equal([]);
  expect(report.stale.length + report.dirty.length, explain(report)).to.equal(0);
  expect(report.reads).to.be.greaterThan(report.ops / 2);
}
