/*
 * h_subjects.c - /v1/subjects routes.  Each handler passes the request to
 * one core operation (which checks policy and audits) and maps the result.
 */
#include "server/server.h"

#include <string.h>

#include <microhttpd.h>

#include "custos/banned.h"

void h_subject_create(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_subject_create(r->vault, &r->caller, r->body, r->body_len, &out);

    custos_reply_result(r, rc, out, 201);
}

void h_subject_read(struct req *r)
{
    char *text = NULL;
    size_t len = 0;
    enum custos_err rc = custos_subject_read_text(r->vault, &r->caller, r->params[0], custos_req_query(r, "purpose"),
                                                  custos_req_query(r, "fields"), &text, &len);

    custos_reply_json_text(r, rc, text, len, 200);
}

void h_subject_update(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_subject_update(r->vault, &r->caller, r->params[0], r->body, r->body_len, &out);

    custos_reply_result(r, rc, out, 200);
}

struct search_args {
    const char *field, *value;
    int others;
};

static enum MHD_Result search_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct search_args *a = cls;

    (void)kind;
    if (strcmp(key, "purpose") == 0)
        return MHD_YES;
    if (a->field)
        a->others++;
    else {
        a->field = key;
        a->value = value ? value : "";
    }
    return MHD_YES;
}

void h_subject_search(struct req *r)
{
    struct search_args a = {NULL, NULL, 0};
    json_t *out = NULL;
    enum custos_err rc;

    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, search_arg, &a);
    if (a.others) {
        custos_err_set(CUSTOS_ERR_INVALID, "search by one field at a time");
        rc = custos_audit_reject(r->vault, &r->caller, "subject.search", CUSTOS_ERR_INVALID);
    } else
        rc = custos_subject_search(r->vault, &r->caller, a.field, a.value, custos_req_query(r, "purpose"), &out);
    if (rc)
        custos_reply_error(r, rc);
    else
        custos_reply_json(r, 200, out);
}

void h_subject_erase(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_subject_erase(r->vault, &r->caller, r->params[0], &out);

    custos_reply_result(r, rc, out, 200);
}

void h_subject_token(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_subject_token(r->vault, &r->caller, r->params[0], &out);

    custos_reply_result(r, rc, out, 200);
}

void h_subject_export(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_subject_export(r->vault, &r->caller, r->params[0], &out);

    custos_reply_result(r, rc, out, 200);
}

void h_link_put(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_link_put(r->vault, &r->caller, r->params[0], r->params[1], r->body, r->body_len, &out);

    custos_reply_result(r, rc, out, 200);
}

void h_erasure_status(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_erasure_status(r->vault, &r->caller, r->params[0], &out);

    custos_reply_result(r, rc, out, 200);
}
