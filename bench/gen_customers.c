/*
 * gen_customers.c - fast deterministic generator of synthetic customers, one
 * JSON object a line, shaped like data/customers-2k.jsonl (see data/README.md):
 *
 *   {"name":"가다연","email":"christiana.dietrich688@naver.com","phone":"010-0180-4956",
 *    "birth_date":"1965-10-15"[,"customs_code":"P595082838751"],
 *    "address_book":[{"recipient":"가다연","phone":"010-0180-4956",
 *                     "address":"대구광역시 구미시 신도시6길 80645"[,"entrance_code":"#1893"]}, ...]}
 *
 * Proportions follow the sample: ~30% have a customs code, 1 to 3 address
 * book entries in equal shares (the first is the customer), ~50% of entries
 * have an entrance code, emails on four Korean/global domains, ~370 bytes a
 * line.  Emails are unique (line number in the local part; the word part
 * never ends in a digit), so an email search finds exactly one subject.
 *
 * Deterministic: line i depends only on (seed, i), so the same arguments
 * always write the same bytes, and a prefix of a big file equals a smaller
 * file.  No real person's data.
 *
 * usage: bench_gen_customers N [SEED] > FILE.jsonl      (SEED default 1)
 *
 * Must never: print anything but the lines on stdout; depend on the clock,
 * the locale or the machine.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "custos/banned.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define OUT_CAP (1u << 20)
#define LINE_MAX_OUT 2048

/* ---- deterministic randomness: splitmix64 seeded per line --------------------------------- */

struct rng {
    uint64_t s;
};

static uint64_t next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n small: the modulo bias is far below anything a benchmark sees). */
static uint32_t below(struct rng *r, uint32_t n)
{
    return (uint32_t)((next(r) >> 32) % n);
}

/* ---- word lists ---------------------------------------------------------------------------- */

static const char *const surnames[] = {
    "김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황", "안",
    "송", "전", "홍", "유", "고", "문", "양", "손", "배", "백", "허", "남", "심", "노", "하", "곽", "성",
    "차", "주", "우", "구", "민", "류", "나", "진", "지", "엄", "채", "원", "천", "방", "공", "현", "함",
    "변", "염", "여", "추", "도", "소", "석", "선", "설", "마", "길", "연", "위", "표", "명", "기", "반",
    "라", "왕", "금", "옥", "육", "인", "맹", "제", "모", "탁", "국", "어", "은", "편", "용", "예", "가",
    "경", "봉", "사", "부", "황보", "남궁", "제갈", "선우", "독고"};

static const char *const syllables[] = {
    "민", "서", "지", "현", "수", "준", "우", "연", "하", "윤", "도", "예", "은", "진", "영", "호", "성",
    "재", "승", "희", "혜", "주", "정", "동", "원", "다", "아", "유", "채", "소", "나", "가", "린", "율",
    "솔", "빈", "건", "태", "훈", "석", "찬", "혁", "경", "미", "숙", "순", "옥", "자", "철", "기", "광",
    "상", "용", "명", "선", "미", "란", "결", "온", "담", "별", "봄", "단", "이", "시", "규", "한", "범"};

static const char *const first_latin[] = {
    "christiana", "americo",  "mohamed",  "rodrigo",  "geovanny", "kristy",   "nicklaus", "carli",
    "shyanne",    "pink",     "toby",     "lue",      "frederic", "magdalen", "billie",   "adela",
    "bernard",    "cecilia",  "dorothy",  "emerson",  "flossie",  "gaylord",  "hilda",    "isaias",
    "jaquelin",   "kendall",  "laverne",  "marcus",   "nedra",    "orville",  "pearlie",  "quentin",
    "rosalind",   "sigmund",  "thea",     "ulises",   "velma",    "wilford",  "xander",   "yolanda",
    "zachery",    "alfreda",  "brock",    "candida",  "desmond",  "ellie",    "fermin",   "gussie",
    "harmony",    "ignatius", "jody",     "korbin",   "lilla",    "monty",    "nova",     "odessa"};

static const char *const last_latin[] = {
    "dietrich", "brekke",  "kerluke", "grimes",  "langworth", "okuneva", "bins",   "tillman-schuppe",
    "ohara",    "abshire", "bashirian", "cronin", "dach",     "ernser",  "feeney", "gislason",
    "hansen",   "jacobi",  "koelpin", "lakin",   "mante",     "nader",   "oberbrunner", "pacocha",
    "quigley",  "rempel",  "schaden", "torp",    "upton",     "volkman", "wehner", "yost",
    "zboncak",  "auer",    "beier",   "crooks",  "douglas",   "emard",   "frami",  "goyette"};

static const char *const domains[] = {"gmail.com", "naver.com", "kakao.com", "daum.net"};

static const char *const provinces[] = {
    "서울특별시", "부산광역시", "대구광역시", "인천광역시", "광주광역시", "대전광역시",
    "울산광역시", "세종특별자치시", "경기도", "강원특별자치도", "충청북도", "충청남도",
    "전북특별자치도", "전라남도", "경상북도", "경상남도", "제주특별자치도"};

static const char *const cities[] = {
    "구미", "광산", "인제", "안양", "밀양", "부천", "김천", "수원", "시흥", "속초", "마포", "강남",
    "송파", "해운대", "수성", "연수", "광명", "용인", "성남", "고양", "청주", "천안", "전주", "목포",
    "포항", "창원", "진주", "제주", "서귀포", "춘천", "원주", "강릉", "여수", "순천", "경주", "안동",
    "거제", "양산", "김해", "평택", "의정부", "파주", "이천", "익산", "군산", "아산", "충주", "제천"};

static const char *const city_suffix[] = {"시", "군", "구"};

static const char *const roads[] = {
    "신도시", "상", "신월", "작점리", "위양", "천을", "능양", "입동", "하북산", "반여울", "도덕동",
    "완도", "창포", "학송", "장유", "터미널", "주안", "야월", "광명", "중앙", "세종", "한누리",
    "올림픽", "테헤란", "새말", "가람", "솔빛", "푸른솔", "은행나무", "매화", "동백", "청송"};

static const char *const road_suffix[] = {"길", "길", "길", "길", "로", "대로"};

/* ---- output -------------------------------------------------------------------------------- */

struct out {
    char *p;
    size_t len;
};

static void adds(struct out *o, const char *s)
{
    size_t n = strlen(s);

    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void addc(struct out *o, char c)
{
    o->p[o->len++] = c;
}

/* Exactly `digits` decimal digits, zero-padded. */
static void add_fixed(struct out *o, uint64_t v, int digits)
{
    int i;

    for (i = digits - 1; i >= 0; i--) {
        o->p[o->len + (size_t)i] = (char)('0' + v % 10);
        v /= 10;
    }
    o->len += (size_t)digits;
}

static void add_dec(struct out *o, uint64_t v)
{
    char t[24];
    int n = 0;

    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        o->p[o->len++] = t[--n];
}

/* ---- one customer -------------------------------------------------------------------------- */

struct person {
    char name[32];
    char phone[16];
};

static void make_person(struct rng *r, struct person *p)
{
    struct out o = {p->name, 0};
    int i, syl = below(r, 10) == 0 ? 1 : 2; /* mostly two-syllable given names */

    adds(&o, surnames[below(r, N(surnames))]);
    for (i = 0; i < syl; i++)
        adds(&o, syllables[below(r, N(syllables))]);
    o.p[o.len] = '\0';
    o = (struct out){p->phone, 0};
    adds(&o, "010-");
    add_fixed(&o, below(r, 10000), 4);
    addc(&o, '-');
    add_fixed(&o, below(r, 10000), 4);
    o.p[o.len] = '\0';
}

static void add_address(struct out *o, struct rng *r)
{
    uint32_t n;

    adds(o, provinces[below(r, N(provinces))]);
    addc(o, ' ');
    adds(o, cities[below(r, N(cities))]);
    adds(o, city_suffix[below(r, N(city_suffix))]);
    addc(o, ' ');
    adds(o, roads[below(r, N(roads))]);
    if (below(r, 2))
        add_dec(o, 1 + below(r, 9));
    adds(o, road_suffix[below(r, N(road_suffix))]);
    addc(o, ' ');
    n = below(r, 3) == 0 ? 1 + below(r, 999) : 1 + below(r, 99999);
    add_dec(o, n);
}

static void add_entry(struct out *o, struct rng *r, const struct person *p)
{
    adds(o, "{\"recipient\":\"");
    adds(o, p->name);
    adds(o, "\",\"phone\":\"");
    adds(o, p->phone);
    adds(o, "\",\"address\":\"");
    add_address(o, r);
    addc(o, '"');
    if (below(r, 2)) {
        adds(o, ",\"entrance_code\":\"#");
        add_fixed(o, below(r, 10000), 4);
        addc(o, '"');
    }
    addc(o, '}');
}

static void customer(struct out *o, uint64_t seed, uint64_t i)
{
    static const uint8_t mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    struct rng r = {seed * 0xd1342543de82ef95ULL ^ (i + 1) * 0x9e3779b97f4a7c15ULL};
    struct person me, other;
    uint32_t year, month, day, k, nab;

    next(&r);
    make_person(&r, &me);
    adds(o, "{\"name\":\"");
    adds(o, me.name);
    /* email: first[.|_]last + unique number; the word part never ends in a digit */
    adds(o, "\",\"email\":\"");
    adds(o, first_latin[below(&r, N(first_latin))]);
    k = below(&r, 3);
    if (k == 0 || (k == 1 && below(&r, 3) == 0)) { /* first.last or, less often, first_last */
        addc(o, k == 0 ? '.' : '_');
        adds(o, last_latin[below(&r, N(last_latin))]);
    }
    add_dec(o, i);
    addc(o, '@');
    adds(o, domains[below(&r, N(domains))]);
    adds(o, "\",\"phone\":\"");
    adds(o, me.phone);
    year = 1945 + below(&r, 64);
    month = 1 + below(&r, 12);
    day = 1 + below(&r, mdays[month - 1]);
    adds(o, "\",\"birth_date\":\"");
    add_fixed(o, year, 4);
    addc(o, '-');
    add_fixed(o, month, 2);
    addc(o, '-');
    add_fixed(o, day, 2);
    addc(o, '"');
    if (below(&r, 10) < 3) {
        adds(o, ",\"customs_code\":\"P");
        add_fixed(o, next(&r) % 1000000000000ULL, 12);
        addc(o, '"');
    }
    adds(o, ",\"address_book\":[");
    nab = 1 + below(&r, 3);
    add_entry(o, &r, &me);
    for (k = 1; k < nab; k++) {
        addc(o, ',');
        make_person(&r, &other);
        add_entry(o, &r, &other);
    }
    adds(o, "]}\n");
}

static int write_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(1, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;

    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno || end == s || *end || s[0] == '-' ? -1 : 0;
}

int main(int argc, char **argv)
{
    uint64_t n, seed = 1, i;
    struct out o;

    if (argc < 2 || argc > 3 || parse_u64(argv[1], &n) || (argc == 3 && parse_u64(argv[2], &seed))) {
        fputs("usage: bench_gen_customers N [SEED] > FILE.jsonl\n", stderr);
        return 2;
    }
    o.p = malloc(OUT_CAP + LINE_MAX_OUT);
    o.len = 0;
    if (!o.p) {
        fputs("bench_gen_customers: out of memory\n", stderr);
        return 1;
    }
    for (i = 0; i < n; i++) {
        customer(&o, seed, i);
        if (o.len >= OUT_CAP) {
            if (write_all(o.p, o.len)) {
                fprintf(stderr, "bench_gen_customers: write: %s\n", strerror(errno));
                return 1;
            }
            o.len = 0;
        }
    }
    if (write_all(o.p, o.len)) {
        fprintf(stderr, "bench_gen_customers: write: %s\n", strerror(errno));
        return 1;
    }
    free(o.p);
    return 0;
}
