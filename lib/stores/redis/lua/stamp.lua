-- KEYS[1] clock. Returns the stamp of a value whose computation starts now.
return current_stamp(KEYS[1])
