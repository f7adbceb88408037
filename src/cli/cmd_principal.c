/*
 * cmd_principal.c - custos principal add|disable|rotate|list, custos token issue|revoke,
 * custos keys rotate: operator commands on the data directory (audited as
 * the local operator "@local").
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli/cli.h"

#include "custos/banned.h"

static const char principal_help[] =
    "usage: custos principal add --data DIR --id ID --kind staff|service --roles R1[,R2...] [--secret-ttl-days N]\n"
    "       custos principal disable --data DIR --id ID\n"
    "       custos principal rotate --data DIR --id ID [--revoke-tokens] [--secret-ttl-days N]\n"
    "       custos principal list --data DIR\n"
    "\n"
    "add prints the new principal's secret (shown once) alone on the last line.\n"
    "disable disables it and revokes every token it owns or minted, at once.\n"
    "rotate gives it a new secret, printed (shown once) alone on the last line; the old secret\n"
    "stops working at once, and with --revoke-tokens every token it owns or minted too.\n"
    "list prints every principal as one JSON object a line (as GET /v1/principals).\n"
    "A secret expires after --secret-ttl-days days (1 to 3650; default 365).\n"
    "The server must not be running; through a running server use POST /v1/principals,\n"
    "POST /v1/principals/{id}/disable and POST /v1/principals/{id}/rotate.\n";

static const char token_help[] =
    "usage: custos token issue --data DIR --principal ID\n"
    "       custos token revoke --data DIR TOKEN\n"
    "\n"
    "issue prints a new token for the principal alone on the last line (local operator only).\n"
    "revoke revokes any token at once.\n";

static const char keys_help[] =
    "usage: custos keys rotate --data DIR\n"
    "\n"
    "Create a new master key version, re-wrap every subject key, retention key and the system\n"
    "key under it, then destroy the old versions.  Safe to interrupt: running it again finishes\n"
    "the job.  It needs the server stopped; a running server rotates on its own, without\n"
    "stopping: POST /v1/keys/rotate (docs/api.md).\n";

struct args {
    const char *dir, *id, *kind, *roles, *principal, *ttl;
    int revoke;
};

/* the options an action takes besides --data */
#define OPT_ID 1u
#define OPT_KIND 2u
#define OPT_ROLES 4u
#define OPT_PRINCIPAL 8u
#define OPT_REVOKE 16u
#define OPT_TTL 32u

/*
 * The options of one action: --data always, and those of `which` (an option the action does not
 * use is refused rather than ignored); then no argument may be left but `operands` of them.
 */
static int parse(int argc, char **argv, const char *cmd, const char *help, unsigned which, int operands,
                 struct args *a)
{
    const struct cli_opt all[] = {{"data", &a->dir, NULL},   {"id", &a->id, NULL},
                                  {"kind", &a->kind, NULL},  {"roles", &a->roles, NULL},
                                  {"principal", &a->principal, NULL}, {"revoke-tokens", NULL, &a->revoke},
                                  {"secret-ttl-days", &a->ttl, NULL}};
    struct cli_opt opts[8];
    size_t i, n = 0;
    int r;

    memset(a, 0, sizeof(*a));
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (i == 0 || (which & (1u << (i - 1))))
            opts[n++] = all[i];
    opts[n] = (struct cli_opt){NULL, NULL, NULL};
    if ((r = cli_options(argc, argv, cmd, help, opts)))
        return r;
    if (!a->dir)
        return cli_usage(cmd, "--data DIR is required");
    if (argc - optind > operands)
        return cli_usage(cmd, "unexpected argument");
    return 0;
}

/* A principal id as the core accepts them, [a-z][a-z0-9._-]{0,63}. */
static int principal_id_ok(const char *s)
{
    size_t i, n = strlen(s);

    if (n < 1 || n > 64 || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' ||
              s[i] == '-'))
            return 0;
    return 1;
}

static int principal_list(const char *dir)
{
    struct custos_vault *v = NULL;
    struct custos_caller sys;
    json_t *out = NULL, *p;
    enum custos_err rc;
    size_t i;

    if ((rc = cli_open(dir, &v)))
        return cli_fail(rc);
    custos_caller_system(&sys);
    rc = custos_principal_list(v, &sys, &out);
    custos_vault_free(v);
    if (rc)
        return cli_fail(rc);
    json_array_foreach(json_object_get(out, "principals"), i, p)
    {
        char *line = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);

        if (line)
            puts(line);
        free(line);
    }
    json_decref(out);
    return fflush(stdout) == 0 ? 0 : cli_error(1, "cannot write the list");
}

int cmd_principal(int argc, char **argv)
{
    struct custos_vault *v = NULL;
    struct custos_caller sys;
    struct args a;
    enum custos_err rc;
    unsigned ttl = CUSTOS_SECRET_TTL_DAYS;
    int r, add, rotate, list;

    if (argc < 2 || cli_wants_help(2, argv)) {
        fputs(principal_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    add = strcmp(argv[1], "add") == 0;
    rotate = strcmp(argv[1], "rotate") == 0;
    list = strcmp(argv[1], "list") == 0;
    if (!add && !rotate && !list && strcmp(argv[1], "disable") != 0)
        return cli_usage("principal", "expected 'add', 'disable', 'rotate' or 'list'");
    r = parse(argc - 1, argv + 1, "principal", principal_help,
              add ? OPT_ID | OPT_KIND | OPT_ROLES | OPT_TTL : rotate ? OPT_ID | OPT_REVOKE | OPT_TTL : list ? 0 : OPT_ID, 0,
              &a);
    if (r)
        return r;
    if (list)
        return principal_list(a.dir);
    if (a.ttl && (r = cli_count("principal", "secret-ttl-days", a.ttl, 1, CUSTOS_SECRET_TTL_DAYS_MAX, &ttl)))
        return r;
    if (!a.id || (add && (!a.kind || !a.roles)))
        return cli_usage("principal", add ? "--id, --kind and --roles are required" : "--id is required");
    /* what is not text cannot go into the JSON request at all */
    if (add && (!cli_text_ok(a.id, 256) || !cli_text_ok(a.kind, 256) || !cli_text_ok(a.roles, 4096)))
        return cli_error(1, "--id, --kind and --roles must be text (UTF-8, no control characters)");
    if ((rc = cli_open(a.dir, &v)))
        return cli_fail(rc);
    custos_caller_system(&sys);
    if (add) {
        json_t *body = json_pack("{s:s, s:s, s:[], s:i}", "id", a.id, "kind", a.kind, "roles", "secret_ttl_days",
                                 (int)ttl),
               *out = NULL;
        const char *p = a.roles;
        char *text;

        while (body && *p) {
            size_t n = strcspn(p, ",");

            json_array_append_new(json_object_get(body, "roles"), json_stringn(p, n));
            p += n + (p[n] == ',');
        }
        text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        rc = text ? custos_principal_create(v, &sys, text, strlen(text), &out) : CUSTOS_ERR_NOMEM;
        if (!rc) {
            printf("principal %s created; its secret (shown once):\n%s\n", a.id,
                   json_string_value(json_object_get(out, "secret")));
        }
        json_decref(out);
        json_decref(body);
        free(text);
    } else if (rotate) {
        json_t *out = NULL, *req = json_pack("{s:b, s:i}", "revoke_tokens", a.revoke, "secret_ttl_days", (int)ttl);
        char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;

        rc = body ? custos_principal_rotate(v, &sys, a.id, body, strlen(body), &out) : CUSTOS_ERR_NOMEM;
        free(body);
        json_decref(req);
        if (!rc) {
            json_t *n = json_object_get(out, "revoked_tokens");

            if (n)
                printf("principal %s: new secret, expires %s, old secret refused, %lld token(s) revoked; its secret "
                       "(shown once):\n%s\n",
                       a.id, json_string_value(json_object_get(out, "secret_expires_at")),
                       (long long)json_integer_value(n), json_string_value(json_object_get(out, "secret")));
            else
                printf("principal %s: new secret, expires %s, old secret refused; its secret (shown once):\n%s\n",
                       a.id, json_string_value(json_object_get(out, "secret_expires_at")),
                       json_string_value(json_object_get(out, "secret")));
        }
        json_decref(out);
    } else {
        rc = custos_principal_disable(v, &sys, a.id);
        if (!rc)
            printf("principal %s disabled; its tokens are revoked\n", a.id);
    }
    custos_vault_free(v);
    return rc ? cli_fail(rc) : 0;
}

int cmd_token(int argc, char **argv)
{
    struct custos_vault *v = NULL;
    struct custos_caller sys;
    struct args a;
    enum custos_err rc;
    int r, issue;

    if (argc < 2 || cli_wants_help(2, argv)) {
        fputs(token_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    issue = strcmp(argv[1], "issue") == 0;
    if (!issue && strcmp(argv[1], "revoke") != 0)
        return cli_usage("token", "expected 'issue' or 'revoke'");
    if ((r = parse(argc - 1, argv + 1, "token", token_help, issue ? OPT_PRINCIPAL : 0, issue ? 0 : 1, &a)))
        return r;
    if (issue ? !a.principal : optind != argc - 2)
        return cli_usage("token", issue ? "--principal ID is required" : "give the token to revoke");
    /* refused here: the core would record any string as the event's target, even one that is not
       UTF-8 (a ledger entry that is not JSON) or too long to record at all */
    if (issue && !principal_id_ok(a.principal))
        return cli_error(1, "malformed principal id");
    if (!issue && !cli_text_ok(argv[optind + 1], 256))
        return cli_error(1, "malformed token");
    if ((rc = cli_open(a.dir, &v)))
        return cli_fail(rc);
    custos_caller_system(&sys);
    if (issue) {
        char tok[CUSTOS_TOKEN_LEN + 1], when[32];
        int64_t exp = 0;

        rc = custos_token_issue_local(v, &sys, a.principal, tok, &exp);
        if (!rc) {
            custos_time_format(when, exp);
            printf("token for %s, expires %s:\n%s\n", a.principal, when, tok);
        }
        sodium_memzero(tok, sizeof(tok));
    } else {
        json_t *body = json_pack("{s:s}", "token", argv[optind + 1]);
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

        rc = text ? custos_token_revoke(v, &sys, text, strlen(text)) : CUSTOS_ERR_NOMEM;
        if (!rc)
            printf("token revoked\n");
        if (text) {
            sodium_memzero(text, strlen(text));
            free(text);
        }
        json_decref(body);
    }
    custos_vault_free(v);
    return rc ? cli_fail(rc) : 0;
}

int cmd_keys(int argc, char **argv)
{
    struct custos_rotate_stats st;
    struct custos_vault *v = NULL;
    struct custos_caller sys;
    struct args a;
    enum custos_err rc;
    int r;

    if (argc < 2 || cli_wants_help(2, argv)) {
        fputs(keys_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "rotate") != 0)
        return cli_usage("keys", "expected 'rotate'");
    if ((r = parse(argc - 1, argv + 1, "keys", keys_help, 0, 0, &a)))
        return r;
    if ((rc = cli_open(a.dir, &v)) == CUSTOS_ERR_LOCKED)
        return cli_error(1, "%s; a running server rotates without stopping: POST /v1/keys/rotate",
                         custos_err_msg(rc));
    if (rc)
        return cli_fail(rc);
    custos_caller_system(&sys);
    rc = custos_keys_rotate(v, &sys, &st);
    custos_vault_free(v);
    if (rc)
        return cli_fail(rc);
    printf("%smaster key now version %u (was %u); %llu subject key(s) and %llu retention key(s) re-wrapped; "
           "%llu old version(s) destroyed\n",
           st.resumed ? "resumed: " : "", st.to_version, st.from_version, (unsigned long long)st.rewrapped,
           (unsigned long long)st.retention_rewrapped, (unsigned long long)st.destroyed_versions);
    return 0;
}
