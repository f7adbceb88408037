#!/usr/bin/env python3
"""interop_verify.py - an independent verifier of a running custos server's ledger.

It shares no code with custos: Python 3's standard library (hashlib, base64, json, urllib) for
hashing, encodings and HTTP, and the `openssl` command line (`pkeyutl -verify -rawin`) for
Ed25519.  It checks what a regulator or witness holding only the vkey would check, against the
standards custos claims and its own docs (docs/format.md, docs/api.md):

 1. the vkey (C2SP signed-note: name+hex(key id)+base64(0x01 || Ed25519 public key)), its key
    id = SHA-256(name || 0x0A || 0x01 || public key)[:4]; the checkpoint (C2SP tlog-checkpoint
    v1.0.0 in a C2SP signed note): its bytes (UTF-8, LF only, blank separator line, em dash
    signature line, padded standard base64), its signature over the text up to the blank line,
    origin, size and root;
 2. every entry from GET /v1/ledger/entries: the RFC 6962 root recomputed from the entry bytes
    (leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || l || r)) equals the signed root, and
    each entry's `event` is the JSON of its bytes, encoded canonically (docs/format.md);
 3. inclusion proofs (RFC 9162 section 2.1.3.2) and consistency proofs (section 2.1.4.2) for edge
    cases (size 1, index 0, index = size - 1, powers of two, from = to, from = to - 1) and
    between two checkpoints taken before and after more activity; malformed or out of range
    requests are refused with 400, and proofs one hash short, long or reordered do not verify;
 4. erasure receipts from DELETE /v1/subjects/{id} (and GET .../erasure): the signature over the
    canonical text of docs/format.md ("Erasure receipts"), the entry at ledger_index is an ok
    subject.erase of that subject, included in a later signed checkpoint.

Usage: interop_verify.py --url URL --vkey VKEY --auditor-token TOK --service-token TOK
       [--state FILE] [--imported N] [--purpose P] [--subject-json JSON] [--expect-retained F1,F2]
The service token's principal must be allowed to read (purpose P), create and erase subjects.
Prints one line per check; exits 1 when any check fails, 2 on a usage error.
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

FAILS = []
CHECKS = 0
QUIET = [0]  # > 0 while checking what must fail: checks neither print nor count
SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")
TMP = tempfile.mkdtemp(prefix="custos-interop-")


def ok(cond, what, detail=""):
    """Record one check; a failed one is printed and remembered."""
    global CHECKS
    if QUIET[0]:
        return cond
    CHECKS += 1
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what + (": " + detail if detail else ""))
        FAILS.append(what)
    return cond


class Stop(Exception):
    """A failure the rest of the run cannot go on from."""


def need(cond, what, detail=""):
    if not ok(cond, what, detail):
        raise Stop(what)


# ---- encodings ----------------------------------------------------------------------------------

def b64_strict(s, want_len=None):
    """RFC 4648 standard base64 with padding, canonical: returns bytes, or None."""
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", s) or len(s) % 4:
        return None
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode() != s:  # non-zero pad bits
        return None
    if want_len is not None and len(raw) != want_len:
        return None
    return raw


def sha256(b):
    return hashlib.sha256(b).digest()


# ---- RFC 6962 / RFC 9162 --------------------------------------------------------------------------

def leaf_hash(entry):
    return sha256(b"\x00" + entry)


def node_hash(l, r):
    return sha256(b"\x01" + l + r)


def mth(leaves):
    """MTH of a list of leaf hashes (RFC 6962 2.1), recursive on the largest power of two < n."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


class Roots:
    """MTH at any size of a list of leaf hashes (each computed once, by mth)."""

    def __init__(self, leaves):
        self.leaves = leaves
        self.memo = {}

    def at(self, n):
        if n not in self.memo:
            self.memo[n] = mth(self.leaves[:n])
        return self.memo[n]


def verify_inclusion(index, size, lh, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 2.1.4.2 for 0 < first < second; first == second (> 0) needs an empty proof and
    equal roots (RFC 6962 2.1.2: PROOF(n, D[n]) is empty)."""
    if first == 0 or first > second:
        return False
    if first == second:
        return len(proof) == 0 and first_hash == second_hash
    if len(proof) == 0:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---- Ed25519 through openssl --------------------------------------------------------------------

def ed25519_verify(pub, msg, sig):
    n = len(os.listdir(TMP))
    kf, mf, sf = (os.path.join(TMP, "%d.%s" % (n, x)) for x in ("key.der", "msg", "sig"))
    with open(kf, "wb") as f:
        f.write(SPKI_ED25519 + pub)
    with open(mf, "wb") as f:
        f.write(msg)
    with open(sf, "wb") as f:
        f.write(sig)
    p = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", kf,
                        "-rawin", "-in", mf, "-sigfile", sf],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode == 0 and b"Signature Verified Successfully" in p.stdout


# ---- HTTP ---------------------------------------------------------------------------------------

class Http:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def req(self, method, path, token=None, body=None):
        data = None
        headers = {}
        if token:
            headers["Authorization"] = "Bearer " + token
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        r = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, method, path, token=None, body=None, want=200):
        st, _, b = self.req(method, path, token, body)
        need(st == want, "%s %s answers %d" % (method, path.split("?")[0], want),
             "HTTP %d: %s" % (st, b[:300]))
        return json.loads(b.decode("utf-8"))


# ---- vkey and checkpoint ------------------------------------------------------------------------

NAME_RE = re.compile(r"[^\s+]+")  # non-empty, no spaces, no '+' (C2SP signed-note key names)


def parse_vkey(vkey):
    # name + key id + key: the name has no '+', the base64 key may (split at the first two)
    parts = vkey.split("+", 2)
    need(len(parts) == 3, "vkey has three '+'-separated parts", vkey)
    name, kid_hex, key_b64 = parts
    need(NAME_RE.fullmatch(name) is not None, "vkey name is a valid key name", name)
    need(re.fullmatch(r"[0-9a-f]{8}", kid_hex) is not None, "vkey key id is 8 lowercase hex digits",
         kid_hex)
    raw = b64_strict(key_b64)
    need(raw is not None, "vkey key is canonical padded standard base64", key_b64)
    need(len(raw) == 33 and raw[0] == 0x01, "vkey key is 0x01 (Ed25519) || 32 bytes",
         "%d bytes, type %r" % (len(raw), raw[:1]))
    pub = raw[1:]
    kid = sha256(name.encode() + b"\n" + b"\x01" + pub)[:4]
    need(kid.hex() == kid_hex, "vkey key id = SHA-256(name || 0x0A || 0x01 || key)[:4]",
         "computed %s, vkey says %s" % (kid.hex(), kid_hex))
    return {"name": name, "kid": kid, "pub": pub}


class Checkpoint:
    pass


def parse_note(raw, vk, label):
    """C2SP signed note + tlog-checkpoint; returns a Checkpoint or raises Stop."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        need(False, label + ": valid UTF-8")
    need("\r" not in text, label + ": no CR (LF line endings only)")
    need(all(c == "\n" or (ord(c) >= 0x20 and ord(c) != 0x7f) for c in text),
         label + ": no control characters but LF")
    need(text.endswith("\n"), label + ": ends with a newline")
    sep = text.rfind("\n\n")
    need(sep >= 0, label + ": has a blank line before the signatures")
    body = text[:sep + 1]
    sigs = text[sep + 2:]
    sig_lines = sigs[:-1].split("\n")
    need(len(sig_lines) >= 1 and all(sig_lines), label + ": one or more signature lines")
    mine = 0
    cp = Checkpoint()
    for line in sig_lines:
        m = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
        need(m is not None, label + ": signature line is '\u2014 <name> <base64>'", repr(line))
        blob = b64_strict(m.group(2))
        need(blob is not None and len(blob) >= 5,
             label + ": signature is canonical padded base64 of key id || signature", m.group(2))
        if m.group(1) != vk["name"] or blob[:4] != vk["kid"]:
            continue
        mine += 1
        need(len(blob) == 68, label + ": Ed25519 signature blob is 4 + 64 bytes", str(len(blob)))
        need(ed25519_verify(vk["pub"], body.encode("utf-8"), blob[4:]),
             label + ": Ed25519 signature over the note text verifies (openssl)")
        cp.sig = blob
    need(mine >= 1, label + ": signed by the vkey's name and key id")
    lines = body[:-1].split("\n")
    need(len(lines) >= 3, label + ": origin, size and root lines")
    origin, size_s, root_s = lines[:3]
    need(origin == vk["name"], label + ": origin equals the vkey name", origin)
    need(re.fullmatch(r"0|[1-9][0-9]*", size_s) is not None,
         label + ": size is decimal without leading zeros", size_s)
    root = b64_strict(root_s, 32)
    need(root is not None, label + ": root is canonical padded base64 of 32 bytes", root_s)
    need(all(lines[3:]), label + ": extension lines (if any) are non-empty")
    cp.origin, cp.size, cp.root, cp.body, cp.text, cp.raw = origin, int(size_s), root, body, text, raw
    cp.ext = lines[3:]
    return cp


def fetch_checkpoint(http, vk, label):
    st, hdr, raw = http.req("GET", "/v1/ledger/checkpoint")
    need(st == 200, label + ": GET /v1/ledger/checkpoint answers 200", str(st))
    ct = hdr.get("Content-Type", "")
    ok(ct.startswith("text/plain"), label + ": Content-Type is text/plain", ct)
    cp = parse_note(raw, vk, label)
    print("     %s: size %d root %s" % (label, cp.size, cp.root.hex()))
    return cp


def wait_checkpoint(http, vk, label, min_size, seconds=15):
    """The latest checkpoint once its size is >= min_size (the server signs at least every
    second while entries arrive)."""
    end = time.time() + seconds
    while True:
        st, _, raw = http.req("GET", "/v1/ledger/checkpoint")
        if st == 200:
            m = re.match(rb"[^\n]*\n(\d+)\n", raw)
            if m and int(m.group(1)) >= min_size:
                return fetch_checkpoint(http, vk, label)
        need(time.time() < end, "%s: a checkpoint of size >= %d within %ds" % (label, min_size,
                                                                                seconds))
        time.sleep(0.1)


# ---- entries ------------------------------------------------------------------------------------

def canonical_json(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def fetch_entries(http, token, start, end, into):
    """Entries [start, end) appended to `into` (a list of bytes); checks each record."""
    bad_index = bad_event = bad_canon = 0
    i = start
    while i < end:
        count = min(1000, end - i)
        d = http.json("GET", "/v1/ledger/entries?start=%d&count=%d" % (i, count), token)
        es = d.get("entries")
        need(isinstance(es, list) and len(es) >= 1, "entries page at %d is non-empty" % i)
        need(isinstance(d.get("size"), int) and d["size"] >= end,
             "entries page reports size >= %d" % end, str(d.get("size")))
        for e in es:
            if i >= end:
                break
            if e.get("index") != i:
                bad_index += 1
            data = b64_strict(e.get("data"))
            need(data is not None, "entry %d: data is canonical padded base64" % i)
            ev = json.loads(data.decode("utf-8"), object_pairs_hook=lambda kv: dict(kv))
            if ev != e.get("event"):
                bad_event += 1
            if canonical_json(ev) != data:
                bad_canon += 1
                if bad_canon == 1:
                    print("     entry %d not canonical: %r" % (i, data[:200]))
            into.append(data)
            i += 1
    ok(bad_index == 0, "entries [%d,%d): index members are sequential" % (start, end),
       "%d wrong" % bad_index)
    ok(bad_event == 0, "entries [%d,%d): event equals the decoded data" % (start, end),
       "%d differ" % bad_event)
    ok(bad_canon == 0, "entries [%d,%d): data is compact JSON in member order (re-encodes to the"
       " same bytes)" % (start, end), "%d differ" % bad_canon)


# ---- proofs -------------------------------------------------------------------------------------

def get_inclusion(http, index, size):
    d = http.json("GET", "/v1/ledger/proof/inclusion?index=%d&size=%d" % (index, size))
    ok(d.get("leaf_index") == index and d.get("tree_size") == size,
       "inclusion %d/%d: leaf_index and tree_size echo the request" % (index, size), str(d)[:200])
    hs = [b64_strict(h, 32) for h in d.get("hashes", [])]
    need(all(h is not None for h in hs), "inclusion %d/%d: hashes are base64 of 32 bytes"
         % (index, size))
    return hs


def get_consistency(http, a, b):
    d = http.json("GET", "/v1/ledger/proof/consistency?from=%d&to=%d" % (a, b))
    hs = [b64_strict(h, 32) for h in d.get("hashes", [])]
    need(all(h is not None for h in hs), "consistency %d->%d: hashes are base64 of 32 bytes"
         % (a, b))
    return hs


def expected_path_len(index, size):
    """RFC 6962 PATH length: the number of levels from the leaf to the root in its tree."""
    n = 0
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        if index < lo + k:
            hi = lo + k
        else:
            lo = lo + k
        n += 1
    return n


def check_inclusion(http, leaves, roots, index, size, label=""):
    hs = get_inclusion(http, index, size)
    what = "inclusion %d/%d%s" % (index, size, label)
    ok(len(hs) == expected_path_len(index, size), what + ": path length as RFC 6962 PATH",
       "%d hashes, want %d" % (len(hs), expected_path_len(index, size)))
    good = verify_inclusion(index, size, leaves[index], hs, roots.at(size))
    ok(good, what + ": verifies (RFC 9162 2.1.3.2)")
    if good and hs:
        ok(not verify_inclusion(index, size, leaves[index], hs[:-1], roots.at(size)),
           what + ": one hash short does not verify")
        ok(not verify_inclusion(index, size, leaves[index], hs + [hs[-1]], roots.at(size)),
           what + ": one hash long does not verify")
        if len(hs) > 1:
            ok(not verify_inclusion(index, size, leaves[index], hs[::-1], roots.at(size))
               or hs == hs[::-1], what + ": reordered does not verify")
        if size > 1:
            other = (index + 1) % size
            ok(not verify_inclusion(other, size, leaves[index], hs, roots.at(size)),
               what + ": does not verify for another index")
    return good


def check_consistency(http, roots, a, b, ra=None, rb=None, label=""):
    hs = get_consistency(http, a, b)
    what = "consistency %d->%d%s" % (a, b, label)
    ra = ra if ra is not None else roots.at(a)
    rb = rb if rb is not None else roots.at(b)
    good = verify_consistency(a, b, ra, rb, hs)
    ok(good, what + ": verifies (RFC 9162 2.1.4.2)" if a < b else what +
       ": empty proof, equal roots", "%d hashes" % len(hs))
    if good and a < b:
        ok(not verify_consistency(a, b, ra, rb, hs[:-1]), what + ": one hash short does not verify")
        ok(not verify_consistency(a, b, ra, rb, hs + [hs[-1]]),
           what + ": one hash long does not verify")
        if len(hs) > 1 and hs != hs[::-1]:
            ok(not verify_consistency(a, b, ra, rb, hs[::-1]), what + ": reordered does not verify")
    return good


def expect_400(http, path, what):
    st, _, b = http.req("GET", path)
    ok(st == 400, what + " (%s) answers 400" % path, "HTTP %d: %s" % (st, b[:200]))


# ---- receipts -----------------------------------------------------------------------------------

FIELD_RE = re.compile(r"[a-z][a-z0-9._-]*")


def receipt_text(origin, r):
    t = "custos-erasure-receipt/v1\norigin %s\nsubject %s\nerased_at %s\nledger_index %d\n" % (
        origin, r["subject"], r["erased_at"], r["ledger_index"])
    for x in r.get("retained", []):
        t += "retained %s %s %s\n" % (x["field"], x["until"], x["legal_basis"])
    return t.encode("utf-8")


def rfc3339_ms(s):
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z", s or "")
    if not m:
        return None
    import calendar
    y, mo, d, h, mi, se, ms = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0)) * 1000 + ms


def check_receipt(vk, r, subject, label):
    need(isinstance(r, dict), label + ": is a JSON object")
    keys = set(r.keys())
    ok(keys in ({"subject", "erased_at", "ledger_index", "signature"},
                {"subject", "erased_at", "ledger_index", "signature", "retained"}),
       label + ": members are subject, erased_at, ledger_index, signature[, retained]",
       str(sorted(keys)))
    ok(r.get("subject") == subject, label + ": names the erased subject", str(r.get("subject")))
    ok(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(r.get("erased_at"))) is not None,
       label + ": erased_at is RFC 3339 UTC with milliseconds", str(r.get("erased_at")))
    need(isinstance(r.get("ledger_index"), int) and r["ledger_index"] >= 0,
         label + ": ledger_index is a non-negative integer", str(r.get("ledger_index")))
    for x in r.get("retained", []):
        ok(FIELD_RE.fullmatch(x.get("field", "")) and re.fullmatch(r"\d{4}-\d\d-\d\d", x.get("until", ""))
           and x.get("legal_basis"), label + ": retained entry has field, until, legal_basis", str(x))
    sig = b64_strict(r.get("signature"), 64)
    need(sig is not None, label + ": signature is canonical padded base64 of 64 bytes",
         str(r.get("signature")))
    msg = receipt_text(vk["name"], r)
    ok(ed25519_verify(vk["pub"], msg, sig),
       label + ": Ed25519 signature over the canonical text verifies (openssl)", repr(msg))
    # the same signature must not verify over near misses of the text
    bad = dict(r)
    bad["ledger_index"] = r["ledger_index"] + 1
    ok(not ed25519_verify(vk["pub"], receipt_text(vk["name"], bad), sig),
       label + ": does not verify with another ledger_index")
    ok(not ed25519_verify(vk["pub"], msg.replace(b"\n", b"\r\n"), sig),
       label + ": does not verify with CRLF line endings")
    ok(not ed25519_verify(vk["pub"], msg[:-1], sig),
       label + ": does not verify without the final newline")
    return sig


# ---- the scenario -------------------------------------------------------------------------------

def run(a):
    http = Http(a.url)
    vk = parse_vkey(a.vkey)

    # 1. checkpoint
    cp1 = fetch_checkpoint(http, vk, "checkpoint 1")
    need(cp1.size >= 1, "checkpoint 1 is not empty", str(cp1.size))
    ok(cp1.ext == [], "checkpoint 1: no extension lines (custos writes none)")
    # tampering with the note must break it
    for what, raw in (("size + 1", cp1.raw.replace(b"\n%d\n" % cp1.size, b"\n%d\n" % (cp1.size + 1), 1)),
                      ("CRLF", cp1.raw.replace(b"\n", b"\r\n"))):
        QUIET[0] += 1
        try:
            parse_note(raw, vk, "tampered checkpoint (%s)" % what)
            rejected = False
        except Stop:
            rejected = True
        finally:
            QUIET[0] -= 1
        ok(rejected, "a checkpoint with %s is rejected" % what)

    # 2. entries and the root
    entries = []
    fetch_entries(http, a.auditor_token, 0, cp1.size, entries)
    leaves = [leaf_hash(e) for e in entries]
    roots = Roots(leaves)
    need(roots.at(cp1.size) == cp1.root, "root recomputed from %d entries equals checkpoint 1's"
         % cp1.size, "%s != %s" % (roots.at(cp1.size).hex(), cp1.root.hex()))
    d = http.json("GET", "/v1/ledger/entries?start=%d&count=1" % (cp1.size - 1), a.auditor_token)
    ok(d["entries"][0]["index"] == cp1.size - 1 and b64_strict(d["entries"][0]["data"]) == entries[-1],
       "a second read of entry %d gives the same bytes" % (cp1.size - 1))

    # subjects for the activity, from the import's events
    subjects, erased = [], set()
    for e in entries:
        ev = json.loads(e)
        if ev.get("action") == "subject.import" and ev.get("result") == "ok":
            subjects.append(ev["subject"])
        if ev.get("action") == "subject.erase" and ev.get("result") == "ok":
            erased.add(ev["subject"])
    subjects = [s for s in subjects if s not in erased]  # so that a second run finds live ones
    need(len(subjects) >= a.imported, "the ledger names at least %d imported subjects" % a.imported,
         str(len(subjects)))

    # a checkpoint remembered from an earlier run (--state, as a witness keeps one): the ledger
    # still holds it, and checkpoint 1 is consistent with it
    if a.state and os.path.exists(a.state):
        with open(a.state) as f:
            old = json.load(f)
        osize, oroot = old["size"], bytes.fromhex(old["root"])
        need(0 < osize <= cp1.size, "remembered checkpoint (size %d) is not larger than checkpoint 1"
             % osize)
        ok(roots.at(osize) == oroot, "root recomputed at the remembered size %d equals the remembered"
           " checkpoint's" % osize)
        check_consistency(http, roots, osize, cp1.size, oroot, cp1.root,
                          " (remembered checkpoint -> checkpoint 1)")

    # 3a. inclusion proofs in the tree of checkpoint 1
    n = cp1.size
    cases = [(0, 1), (0, 2), (1, 2), (2, 3), (0, 3), (3, 4), (4, 5), (6, 7), (5, 8), (7, 8)]
    p2 = 1
    while p2 * 2 <= n:
        p2 *= 2
    cases += [(0, n), (n - 1, n), (n // 2, n), (p2 - 1, p2), (p2 - 1, n), (p2 % n, n)]
    if p2 + 1 <= n:
        cases += [(p2, p2 + 1)]
    for idx, size in sorted(set(c for c in cases if c[1] <= n)):
        check_inclusion(http, leaves, roots, idx, size)
    # 3b. consistency proofs in that tree
    for f, t in sorted(set([(1, 1), (1, 2), (1, n), (2, 3), (3, 7), (4, 8), (5, 8), (7, 8), (6, n),
                            (p2, n), (p2 - 1, n), (n - 1, n), (n, n), (n // 2, n)])):
        if 0 < f <= t <= n:
            check_consistency(http, roots, f, t)
    # 3c. requests out of range are refused
    expect_400(http, "/v1/ledger/proof/inclusion?index=%d&size=%d" % (n, n), "index == size")
    expect_400(http, "/v1/ledger/proof/inclusion?index=0&size=0", "size 0")
    expect_400(http, "/v1/ledger/proof/inclusion?index=0&size=%d" % (10 ** 9), "size beyond the ledger")
    expect_400(http, "/v1/ledger/proof/inclusion?index=01&size=%d" % n, "a leading zero")
    expect_400(http, "/v1/ledger/proof/inclusion?index=-1&size=%d" % n, "a negative index")
    expect_400(http, "/v1/ledger/proof/inclusion?index=0&index=0&size=%d" % n, "a repeated parameter")
    expect_400(http, "/v1/ledger/proof/consistency?from=0&to=%d" % n, "from 0")
    expect_400(http, "/v1/ledger/proof/consistency?from=0&to=0", "0 -> 0")
    expect_400(http, "/v1/ledger/proof/consistency?from=%d&to=%d" % (n, n - 1), "from > to")
    expect_400(http, "/v1/ledger/proof/consistency?from=1&to=%d" % (10 ** 9), "to beyond the ledger")
    ok(not verify_consistency(0, 0, sha256(b""), sha256(b""), []),
       "this verifier, like custos, rejects a consistency proof from size 0")

    # more activity: reads, a failed token, a create, erasures (two imported subjects if any, and
    # the created one)
    svc = a.service_token
    for s in subjects[:5]:
        http.json("GET", "/v1/subjects/%s?purpose=%s" % (s, a.purpose), svc)
    st, _, _ = http.req("GET", "/v1/subjects/%s?purpose=%s" % ("0" * 32, a.purpose), "cus_" + "A" * 43)
    ok(st == 401, "a made-up token is refused (an auth.fail entry)", str(st))
    created = http.json("POST", "/v1/subjects", svc, json.loads(a.subject_json), want=201)
    new_id = created.get("id")
    need(isinstance(new_id, str) and re.fullmatch(r"[0-9a-f]{32}", new_id or ""),
         "POST /v1/subjects returns an id", str(created)[:200])
    receipts = []
    for s in subjects[6:8] + [new_id]:
        r = http.json("DELETE", "/v1/subjects/%s" % s, svc)
        receipts.append((s, r))
    st, _, _ = http.req("DELETE", "/v1/subjects/%s" % new_id, svc)
    ok(st == 410, "erasing twice answers 410", str(st))
    want = [f for f in a.expect_retained.split(",") if f]
    got = [x.get("field") for x in receipts[-1][1].get("retained", [])]
    ok(got == want, "the created subject's receipt retains %s" % (want or "nothing"), str(got))

    # 4a. receipts: signature and canonical form
    last = max(r["ledger_index"] for _, r in receipts if isinstance(r.get("ledger_index"), int))
    for s, r in receipts:
        check_receipt(vk, r, s, "receipt for %s" % s[:8])
        e = http.json("GET", "/v1/subjects/%s/erasure" % s, svc)
        ok(e.get("state") == "erased" and e.get("ledger_index") == r["ledger_index"],
           "erasure status of %s names the same ledger_index" % s[:8], str(e)[:200])
        if "receipt" in e:
            check_receipt(vk, e["receipt"], s, "erasure-status receipt for %s" % s[:8])
            ok(e["receipt"]["erased_at"] == r["erased_at"],
               "erasure-status receipt for %s: same erased_at" % s[:8])
        else:
            ok(False, "erasure status of %s carries a receipt" % s[:8])

    # a second checkpoint, after the activity; it must cover the erasures
    cp2 = wait_checkpoint(http, vk, "checkpoint 2", last + 1)
    need(cp2.size > cp1.size, "checkpoint 2 is larger than checkpoint 1")
    fetch_entries(http, a.auditor_token, cp1.size, cp2.size, entries)
    leaves += [leaf_hash(e) for e in entries[cp1.size:]]
    roots = Roots(leaves)
    need(roots.at(cp1.size) == cp1.root, "root at size %d is unchanged" % cp1.size)
    need(roots.at(cp2.size) == cp2.root, "root recomputed from %d entries equals checkpoint 2's"
         % cp2.size, "%s != %s" % (roots.at(cp2.size).hex(), cp2.root.hex()))

    # 3d. consistency between the two signed checkpoints (signed roots, not recomputed ones)
    check_consistency(http, roots, cp1.size, cp2.size, cp1.root, cp2.root, " (checkpoints)")
    check_consistency(http, roots, cp2.size, cp2.size, cp2.root, cp2.root, " (checkpoint 2)")
    check_consistency(http, roots, 1, cp2.size)
    check_inclusion(http, leaves, roots, cp2.size - 1, cp2.size, " (checkpoint 2)")

    # 4b. each receipt's entry: an ok subject.erase of that subject, included in checkpoint 2
    for s, r in receipts:
        i = r["ledger_index"]
        ev = json.loads(entries[i])
        ok(ev.get("action") == "subject.erase" and ev.get("result") == "ok" and ev.get("subject") == s,
           "entry %d (receipt for %s) is an ok subject.erase of that subject" % (i, s[:8]),
           entries[i].decode()[:300])
        check_inclusion(http, leaves, roots, i, cp2.size, " (receipt for %s in checkpoint 2)" % s[:8])
        # erased_at is the tombstone's time (step 2 of the erasure), the entry's is when it was
        # encoded (step 3): not equal, but in that order and close
        t = ev.get("time", 0)
        e_ms = rfc3339_ms(r["erased_at"])
        ok(e_ms is not None and 0 <= t - e_ms <= 60000,
           "receipt for %s: erased_at is at most 60 s before its entry's time" % s[:8],
           "%s vs entry time %d" % (r["erased_at"], t))
    if a.state:
        with open(a.state, "w") as f:
            json.dump({"origin": cp2.origin, "size": cp2.size, "root": cp2.root.hex()}, f)

    # a receipt moved to another subject must not verify
    s, r = receipts[-1]
    bad = dict(r, subject="0" * 32)
    ok(not ed25519_verify(vk["pub"], receipt_text(vk["name"], bad), b64_strict(r["signature"])),
       "a receipt moved to another subject does not verify")


DEFAULT_SUBJECT = json.dumps({
    "name": "Interop Tester", "email": "interop@example.org", "phone": "010-1234-5678",
    "birth_date": "1990-01-01", "address_book": [{"recipient": "Interop Tester",
                                                  "phone": "010-1234-5678", "address": "1 Test Road"}]})


def self_test_openssl():
    """openssl can verify Ed25519 over raw input with a key given as SPKI DER built from the raw
    32 bytes (a key pair made by openssl itself; nothing from custos)."""
    k, pub, m, sg = (os.path.join(TMP, x) for x in ("st.key", "st.pub", "st.msg", "st.sig"))
    run = lambda *c: subprocess.run(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE).returncode
    need(run("openssl", "genpkey", "-algorithm", "ed25519", "-out", k) == 0 and
         run("openssl", "pkey", "-in", k, "-pubout", "-outform", "DER", "-out", pub) == 0,
         "openssl makes an Ed25519 key pair")
    with open(pub, "rb") as f:
        spki = f.read()
    need(len(spki) == 44 and spki[:12] == SPKI_ED25519,
         "openssl's Ed25519 SubjectPublicKeyInfo is 302a300506032b6570032100 || key")
    with open(m, "wb") as f:
        f.write(b"interop self-test\n")
    need(run("openssl", "pkeyutl", "-sign", "-inkey", k, "-rawin", "-in", m, "-out", sg) == 0,
         "openssl pkeyutl -sign -rawin works for Ed25519")
    with open(sg, "rb") as f:
        sig = f.read()
    need(ed25519_verify(spki[12:], b"interop self-test\n", sig),
         "openssl pkeyutl -verify -rawin verifies with a raw key wrapped in the DER prefix")
    need(not ed25519_verify(spki[12:], b"interop self-test\r\n", sig),
         "openssl pkeyutl -verify -rawin rejects another message")


def self_test_vkey():
    """A vkey whose base64 key holds '+' and '/' parses (C2SP vkeys split at the first two '+')."""
    pub = b"\x00\xff" + bytes([0xfb, 0xef, 0xbf]) * 10  # base64 "AQD/+++/+++/..."
    name = "interop.example/self-test"
    kid = sha256(name.encode() + b"\n\x01" + pub)[:4]
    vk = name + "+" + kid.hex() + "+" + base64.b64encode(b"\x01" + pub).decode()
    need("+" in vk.split("+", 2)[2], "self-test vkey's key holds '+'")
    QUIET[0] += 1
    try:
        got = parse_vkey(vk)
    finally:
        QUIET[0] -= 1
    need(got["pub"] == pub and got["kid"] == kid, "a vkey whose base64 holds '+' parses")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--vkey", required=True)
    ap.add_argument("--auditor-token", required=True)
    ap.add_argument("--service-token", required=True)
    ap.add_argument("--state", help="JSON file: a checkpoint from an earlier run, to check"
                    " consistency from; rewritten with the last checkpoint seen")
    ap.add_argument("--imported", type=int, default=0,
                    help="at least this many subject.import entries (then 5 are read, 2 erased)")
    ap.add_argument("--purpose", default="delivery", help="purpose of the reads")
    ap.add_argument("--subject-json", default=DEFAULT_SUBJECT, help="body of the created subject")
    ap.add_argument("--expect-retained", default="",
                    help="comma-separated fields the created subject's receipt must retain, in order")
    a = ap.parse_args()
    try:
        self_test_openssl()
        self_test_vkey()
        run(a)
    except Stop as e:
        print("stopped at: %s" % e)
    except Exception as e:  # a crash is a failure too, with its cause
        import traceback
        traceback.print_exc()
        FAILS.append("exception: %r" % e)
    finally:
        for f in os.listdir(TMP):
            os.unlink(os.path.join(TMP, f))
        os.rmdir(TMP)
    if FAILS:
        print("%d of %d checks failed:" % (len(FAILS), CHECKS))
        for f in FAILS:
            print("  " + f)
        return 1
    print("all %d checks passed" % CHECKS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
