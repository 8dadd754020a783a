/**
 * Whether instances of a class may hold state that reflection cannot read: `#private` members
 * (native, or as TypeScript and Babel down-level them through WeakMaps), or the internal slots of
 * a built-in class. Such state is neither in a key built from the instance's own fields nor in a
 * cached copy rebuilt without its constructor, so both keys and values must refuse it.
 *
 * A class's source is the only place private members show, so it is read once per class; a "#"
 * in one of its strings refuses it too, which errs on the safe side.
 */
const verdicts = new WeakMap<Function, string | null>();

const PRIVATE_MEMBER = /#[\p{ID_Start}_$\\]|classPrivate(Field|Method)/u;
const NATIVE = /\{\s*\[native code\]\s*\}\s*$/;

/** Why instances of `type` hide state (a phrase such as "its class has #private members"), or undefined. */
export function hiddenStateOf(type: Function): string | undefined {
  let verdict = verdicts.get(type);
  if (verdict === undefined) {
    verdict = judge(type);
    verdicts.set(type, verdict);
  }
  return verdict ?? undefined;
}

function judge(type: Function): string | null {
  for (
    let c: unknown = type;
    typeof c === "function" && c !== Object && c !== Function.prototype;
    c = Object.getPrototypeOf(c)
  ) {
    const source = Function.prototype.toString.call(c);
    const name = (c as Function).name || "an unnamed class";
    if (NATIVE.test(source))
      return `its state is inside the built-in ${name}, which JavaScript cannot read`;
    if (PRIVATE_MEMBER.test(source))
      return `${name} keeps state in #private members, which JavaScript cannot read from outside`;
  }
  return null;
}
