#!/usr/bin/env python3
"""Breaks one or more JWE checks of the core at a time and shows which
tests catch it (each hostile test must fail when its check is broken).

    python3 core/tests/jwe/mutants.py crit nested curve taglen mac nokeys algmismatch
    python3 core/tests/jwe/mutants.py zip coordlen ivlen encmismatch
    python3 core/tests/jwe/mutants.py cty eklen
    python3 core/tests/jwe/mutants.py p2c
    python3 core/tests/jwe/mutants.py strict

Run from anywhere; it restores core/src with git checkout afterwards, so
commit or stash your own changes there first.
"""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
M = {
 'crit': ('core/src/jwe.rs', 'for member in ["crit", "zip"] {', 'for member in ["zip"] {'),
 'zip': ('core/src/jwe.rs', 'for member in ["crit", "zip"] {', 'for member in ["crit"] {'),
 'p2c': ('core/src/jwe.rs', 'for member in ["p2c", "p2s"] {', 'for member in ["p2s"] {'),
 'nested': ('core/src/jwe.rs', 'if is_jwe(&inner) {', 'if false && is_jwe(&inner) {'),
 'cty': ('core/src/jwe.rs', 'other => return Err(Error::NotNested(other.map(str::to_string))),', '_ => {}'),
 'strict': ('core/src/jwe.rs', 'let map = parse_object(bytes, Part::Header)?;', 'let map: Map<String, Value> = serde_json::from_slice(bytes).map_err(|_| Error::NotObject(Part::Header))?;'),
 'curve': ('core/src/jwe_keys.rs', 'if self.crv != curve.name() {', 'if false && self.crv != curve.name() {'),
 'coordlen': ('core/src/jwe_keys.rs', 'if self.x.len() != len || self.y.len() != len {\n            return Err(Error::BadEpk("wrong coordinate length"));', 'if false {\n            return Err(Error::BadEpk("wrong coordinate length"));'),
 'taglen': ('core/src/jwe.rs', '(Part::Tag, tag.len(), TAG_LEN),', ''),
 'ivlen': ('core/src/jwe.rs', '(Part::Iv, iv.len(), header.enc.iv_len()),', ''),
 'eklen': ('core/src/jwe.rs', '            key.encrypted_key_len(),', '            encrypted_key.len(),'),
 'mac': ('core/src/jwe.rs', 'verify_slices_are_equal(&cbc_tag(mac_key, aad, iv, ct), tag).ok()?;', 'let _ = verify_slices_are_equal(&cbc_tag(mac_key, aad, iv, ct), tag);'),
 'nokeys': ('core/src/jwe.rs', '    if dkeys.is_empty() {\n        return Err(Error::EncryptedNotAccepted);', '    if false {\n        return Err(Error::EncryptedNotAccepted);'),
 'algmismatch': ('core/src/jwe.rs', 'if key.alg != header.alg {', 'if false && key.alg != header.alg {'),
 'encmismatch': ('core/src/jwe.rs', 'if let Some(key_enc) = key.enc.filter(|e| *e != header.enc) {', 'if let Some(key_enc) = key.enc.filter(|e| false && *e != header.enc) {'),
}
names = sys.argv[1:]
for n in names:
    path, old, new = M[n]
    path = os.path.join(ROOT, path)
    s = open(path).read()
    assert s.count(old) == 1, n
    open(path, 'w').write(s.replace(old, new))
    print('broke', n)
r = subprocess.run('cargo test -p jwt_rls_core --test jwe --lib --no-fail-fast 2>&1', shell=True, capture_output=True, text=True, cwd=ROOT)
out = r.stdout
for line in out.splitlines():
    if ' ... FAILED' in line or 'panicked at' in line or line.startswith('error') or 'test result' in line:
        print(line)
# show panic message lines following 'panicked at'
lines = out.splitlines()
for i, l in enumerate(lines):
    if 'panicked at' in l:
        print('   ', ' | '.join(lines[i+1:i+4]))
subprocess.run(['git', 'checkout', 'core/src'], cwd=ROOT)
