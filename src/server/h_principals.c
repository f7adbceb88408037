/*
 * h_principals.c - /v1/health, /v1/principals, /v1/auth and /v1/keys routes.
 */
#include "server/server.h"

#include <string.h>

#include "custos/banned.h"

void h_health(struct req *r)
{
    static const char ok[] = "{\"status\":\"ok\"}";

    custos_reply_text(r, 200, ok, sizeof(ok) - 1, "application/json");
}

void h_principal_create(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_principal_create(r->vault, &r->caller, r->body, r->body_len, &out);

    custos_reply_result(r, rc, out, 201);
}

void h_principal_disable(struct req *r)
{
    enum custos_err rc = custos_principal_disable(r->vault, &r->caller, r->params[0]);

    if (rc)
        custos_reply_error(r, rc);
    else
        custos_reply_json(r, 200, json_pack("{s:s, s:b}", "id", r->params[0], "disabled", 1));
}

void h_principal_rotate(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_principal_rotate(r->vault, &r->caller, r->params[0], r->body, r->body_len, &out);

    custos_reply_result(r, rc, out, 200);
}

void h_principal_list(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_principal_list(r->vault, &r->caller, &out);

    custos_reply_result(r, rc, out, 200);
}

void h_principal_tokens(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_principal_tokens(r->vault, &r->caller, r->params[0], &out);

    custos_reply_result(r, rc, out, 200);
}

void h_principal_token_revoke(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_token_revoke_id(r->vault, &r->caller, r->params[0], r->params[1], &out);

    custos_reply_result(r, rc, out, 200);
}

void h_auth_token(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_token_issue(r->vault, r->body, r->body_len, r->source, &out);

    custos_reply_result(r, rc, out, 200);
}

void h_auth_revoke(struct req *r)
{
    enum custos_err rc = custos_token_revoke(r->vault, &r->caller, r->body, r->body_len);

    if (rc)
        custos_reply_error(r, rc);
    else
        custos_reply_json(r, 200, json_pack("{s:b}", "revoked", 1));
}

void h_keys_status(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_keys_status(r->vault, &r->caller, &out);

    custos_reply_result(r, rc, out, 200);
}

/* 202: the rotation runs in its own thread; GET /v1/keys follows it */
void h_keys_rotate(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_keys_rotate_start(r->vault, &r->caller, r->body, r->body_len, &out);

    custos_reply_result(r, rc, out, 202);
}
