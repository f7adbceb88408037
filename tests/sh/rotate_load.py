#!/usr/bin/env python3
"""rotate_load.py PORT ADMIN_TOKEN SERVICE_TOKEN SUBJECTS SECONDS THREADS: the load half of
test_rotate_load.sh (standard library only).

SUBJECTS holds one "email<TAB>customs_code" line per imported subject.  THREADS clients create
subjects, PATCH their customs_code (a sensitive field: a re-key, a new key wrapped under the
current master version), erase some and read them back, each on subjects of its own, while one
more rotates the master key again and again through POST /v1/keys/rotate, for SECONDS.  Then
every subject is read once more: the ones erased answer 410, every other one its latest email
and customs_code.  Prints a summary; exit 0 when nothing went wrong, 1 otherwise (with the first
answer of each kind of failure)."""
import collections
import http.client
import json
import random
import sys
import threading
import time

PORT, ADMIN, SVC, SUBJECTS = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
SECS, NTHREADS = float(sys.argv[5]), int(sys.argv[6])
tls = threading.local()
lock = threading.Lock()
errors = collections.Counter()
samples = {}
counts = collections.Counter()
state = {}  # id -> (email, customs_code), or None once erased


def req(method, path, body=None, tok=SVC):
    c = getattr(tls, 'c', None)
    if c is None:
        c = tls.c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=60)
    h = {'Authorization': 'Bearer ' + tok}
    data = None
    if body is not None:
        data = json.dumps(body)
        h['Content-Type'] = 'application/json'
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        d = r.read()
    except Exception as e:  # a dropped connection is a failure too
        tls.c = None
        return 0, str(e)
    try:
        return r.status, (json.loads(d) if d else None)
    except ValueError:
        return r.status, d


def note(kind, st, body):
    with lock:
        errors[(kind, st)] += 1
        samples.setdefault((kind, st), body)


def find(lines):
    for email, cc in lines:
        st, b = req('GET', '/v1/subjects?email=%s&purpose=account' % email)
        if st != 200 or len(b['ids']) != 1:
            note('search', st, b)
            continue
        with lock:
            state[b['ids'][0]] = (email, cc)


subjects = [tuple(l.rstrip('\n').split('\t')) for l in open(SUBJECTS, encoding='utf-8')]
ths = [threading.Thread(target=find, args=(subjects[k::4],)) for k in range(4)]
[t.start() for t in ths]
[t.join() for t in ths]
ids = list(state)
random.Random(1).shuffle(ids)
parts = [ids[k::NTHREADS] for k in range(NTHREADS)]
stop = threading.Event()


def worker(k):
    mine, rnd, seq = parts[k], random.Random(k), 0
    while not stop.is_set():
        op = rnd.random()
        if op < 0.2:
            seq += 1
            em, cc = 'load%d.%d@example.com' % (k, seq), 'P9%02d%09d' % (k, seq)
            st, b = req('POST', '/v1/subjects', {'name': '부하', 'email': em, 'customs_code': cc})
            if st == 201:
                with lock:
                    state[b['id']] = (em, cc)
                mine.append(b['id'])
            else:
                note('create', st, b)
            counts['create'] += 1
            continue
        sid = rnd.choice(mine)
        exp = state[sid]
        if op < 0.5 and exp:
            cc = 'P8%02d%09d' % (k, rnd.randrange(10 ** 9))
            st, b = req('PATCH', '/v1/subjects/' + sid, {'customs_code': cc})
            if st == 200:
                with lock:
                    state[sid] = (exp[0], cc)
            else:
                note('patch', st, b)
            counts['patch'] += 1
        elif op < 0.55 and exp:
            st, b = req('DELETE', '/v1/subjects/' + sid)
            if st == 200:
                with lock:
                    state[sid] = None
            else:
                note('erase', st, b)
            counts['erase'] += 1
        else:
            st, b = req('GET', '/v1/subjects/%s?purpose=account' % sid)
            if exp is None:
                if st != 410:
                    note('read-erased', st, b)
            elif st != 200 or b['fields'].get('email') != exp[0] or b['fields'].get('customs_code') != exp[1]:
                note('read', st, b)
            counts['read'] += 1


def rotator():
    end = time.time() + SECS
    while time.time() < end:
        st, b = req('POST', '/v1/keys/rotate', tok=ADMIN)
        if st != 202:
            note('rotate', st, b)
            return
        while True:
            st, b = req('GET', '/v1/keys', tok=ADMIN)
            if st != 200:
                note('keys', st, b)
                return
            if b['rotation']['state'] != 'running':
                if b['rotation']['state'] != 'done':
                    note('rotation-end', b['rotation']['state'], b)
                break
            time.sleep(0.02)
        counts['rotation'] += 1


ths = [threading.Thread(target=worker, args=(k,)) for k in range(NTHREADS)]
rt = threading.Thread(target=rotator)
[t.start() for t in ths]
rt.start()
rt.join()
stop.set()
[t.join() for t in ths]


def check(lst):
    for sid in lst:
        exp = state[sid]
        st, b = req('GET', '/v1/subjects/%s?purpose=account' % sid)
        ok = (st == 410) if exp is None else (
            st == 200 and b['fields'].get('email') == exp[0] and b['fields'].get('customs_code') == exp[1])
        if not ok:
            note('final', st, b)


allids = list(state)
ths = [threading.Thread(target=check, args=(allids[k::4],)) for k in range(4)]
[t.start() for t in ths]
[t.join() for t in ths]
print('subjects %d (found %d of %d imported), erased %d, ops %s' % (
    len(state), len(ids), len(subjects), sum(1 for v in state.values() if v is None), dict(counts)))
for k, v in sorted(errors.items(), key=str):
    print('ERROR', k, v, str(samples[k])[:300])
sys.exit(1 if errors or counts['rotation'] < 2 or len(ids) != len(subjects) else 0)
