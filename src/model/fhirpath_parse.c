/*
 * fhirpath_parse.c - the FHIRPath lexer and recursive-descent parser.
 *
 * cv_fhirpath_compile() turns an expression into an immutable tree of
 * fp_node_t allocated in the expression's own pool. Operator precedence
 * follows the FHIRPath N1 grammar (lowest first): implies; or xor; and;
 * in contains; = ~ != !~; < > <= >=; |; is as; + - &; * / div mod;
 * unary + -; then invocation (.) and indexers. Nesting is bounded by
 * FP_MAX_AST_DEPTH. Messages carry the offset, never the expression.
 */
#include "model/fhirpath_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
	T_EOF,
	T_IDENT,   /* identifier or keyword; text in tok */
	T_QIDENT,  /* `delimited identifier` */
	T_STRING,  /* 'string' (unescaped) */
	T_NUMBER,  /* 12 or 1.5 */
	T_DATE,    /* @2015-02-04, @2015-02-04T14:34, @T14:34 */
	T_VAR,     /* %name */
	T_SPECIAL, /* $this, $index, $total */
	T_OP,      /* punctuation: text in tok */
} tkind;

typedef struct parser {
	cv_fhirpath_t *e;
	const char *src;
	size_t len;
	size_t pos;
	/* current token */
	tkind k;
	size_t toff;
	char *tok;
	size_t tlen;
	unsigned depth;
	char *err;
	size_t errlen;
	cv_rc rc;
} parser_t;

static cv_rc perr(parser_t *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static cv_rc perr(parser_t *p, size_t off, const char *fmt, ...)
{
	va_list ap;
	char msg[160];

	if (p->rc)
		return p->rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s at offset %zu", msg, off);
	p->rc = CV_E_INVALID;
	return p->rc;
}

static void too_deep(parser_t *p)
{
	perr(p, p->toff, "expression nested deeper than %u", FP_MAX_AST_DEPTH);
	p->rc = CV_E_LIMIT;
}

/* ---- lexer --------------------------------------------------------------- */

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_dig(char c)
{
	return c >= '0' && c <= '9';
}

static bool skip_space(parser_t *p)
{
	for (;;) {
		while (p->pos < p->len && strchr(" \t\r\n\f", p->src[p->pos]) && p->src[p->pos])
			p->pos++;
		if (p->pos + 1 < p->len && p->src[p->pos] == '/' && p->src[p->pos + 1] == '/') {
			while (p->pos < p->len && p->src[p->pos] != '\n')
				p->pos++;
		} else if (p->pos + 1 < p->len && p->src[p->pos] == '/' && p->src[p->pos + 1] == '*') {
			const char *end = NULL;
			for (size_t i = p->pos + 2; i + 1 < p->len; i++) {
				if (p->src[i] == '*' && p->src[i + 1] == '/') {
					end = p->src + i;
					break;
				}
			}
			if (!end) {
				perr(p, p->pos, "unterminated comment");
				return false;
			}
			p->pos = (size_t)(end - p->src) + 2;
		} else {
			return true;
		}
	}
}

static int hexval(char c)
{
	if (is_dig(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Appends the UTF-8 encoding of cp to out. */
static size_t put_utf8(char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	out[0] = (char)(0xE0 | (cp >> 12));
	out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[2] = (char)(0x80 | (cp & 0x3F));
	return 3;
}

/* Reads a quoted token ending with q, unescaping into the pool. */
static bool lex_quoted(parser_t *p, char q)
{
	size_t start = p->pos++;
	char *buf = cv_pool_alloc(&p->e->pool, p->len - start + 1);
	size_t n = 0;

	if (!buf) {
		p->rc = CV_E_NOMEM;
		return false;
	}
	while (p->pos < p->len && p->src[p->pos] != q) {
		char c = p->src[p->pos++];
		if (c != '\\') {
			buf[n++] = c;
			continue;
		}
		if (p->pos >= p->len)
			break;
		c = p->src[p->pos++];
		switch (c) {
		case 'n': buf[n++] = '\n'; break;
		case 'r': buf[n++] = '\r'; break;
		case 't': buf[n++] = '\t'; break;
		case 'f': buf[n++] = '\f'; break;
		case '\'': case '"': case '`': case '\\': case '/': buf[n++] = c; break;
		case 'u': {
			unsigned cp = 0;
			for (int i = 0; i < 4; i++) {
				int h = p->pos < p->len ? hexval(p->src[p->pos]) : -1;
				if (h < 0) {
					perr(p, p->pos, "invalid \\u escape");
					return false;
				}
				cp = cp * 16 + (unsigned)h;
				p->pos++;
			}
			if (cp == 0) {
				perr(p, p->pos, "invalid \\u escape");
				return false;
			}
			n += put_utf8(buf + n, cp);
			break;
		}
		default:
			perr(p, p->pos - 1, "invalid escape");
			return false;
		}
	}
	if (p->pos >= p->len) {
		perr(p, start, "unterminated string");
		return false;
	}
	p->pos++;
	buf[n] = '\0';
	p->tok = buf;
	p->tlen = n;
	return true;
}

/* @date, @dateTime or @Ttime literal text (without '@'). */
static void lex_date(parser_t *p)
{
	size_t start = ++p->pos;
	bool saw_t = false;

	while (p->pos < p->len) {
		char c = p->src[p->pos];
		if (c == 'T')
			saw_t = true;
		if (is_dig(c) || c == ':' || c == 'T' || c == 'Z' || (c == '-' && (!saw_t || p->pos > start + 1)) ||
		    (c == '.' && p->pos + 1 < p->len && is_dig(p->src[p->pos + 1])) || (c == '+' && saw_t))
			p->pos++;
		else
			break;
	}
	p->tok = (char *)p->src + start;
	p->tlen = p->pos - start;
}

static void lex_number(parser_t *p)
{
	size_t start = p->pos;

	while (p->pos < p->len && is_dig(p->src[p->pos]))
		p->pos++;
	if (p->pos + 1 < p->len && p->src[p->pos] == '.' && is_dig(p->src[p->pos + 1])) {
		p->pos++;
		while (p->pos < p->len && is_dig(p->src[p->pos]))
			p->pos++;
	}
	p->tok = (char *)p->src + start;
	p->tlen = p->pos - start;
}

static void lex_word(parser_t *p)
{
	size_t start = p->pos;

	while (p->pos < p->len && (is_alpha(p->src[p->pos]) || is_dig(p->src[p->pos])))
		p->pos++;
	p->tok = (char *)p->src + start;
	p->tlen = p->pos - start;
}

static bool lex_op(parser_t *p)
{
	static const char *ops2[] = {"!=", "!~", "<=", ">=", NULL};
	static const char ops1[] = ".[](),+-*/|&=~<>{}";
	const char *s = p->src + p->pos;

	for (int i = 0; ops2[i]; i++) {
		if (p->pos + 1 < p->len && s[0] == ops2[i][0] && s[1] == ops2[i][1]) {
			p->tok = (char *)s;
			p->tlen = 2;
			p->pos += 2;
			return true;
		}
	}
	if (*s && strchr(ops1, *s)) {
		p->tok = (char *)s;
		p->tlen = 1;
		p->pos++;
		return true;
	}
	perr(p, p->pos, "unexpected character");
	return false;
}

/* Reads the next token into p->k / p->tok. */
static bool next(parser_t *p)
{
	char c;

	if (p->rc || !skip_space(p))
		return false;
	p->toff = p->pos;
	p->tok = (char *)"";
	p->tlen = 0;
	if (p->pos >= p->len) {
		p->k = T_EOF;
		return true;
	}
	c = p->src[p->pos];
	if (c == '\'') {
		p->k = T_STRING;
		return lex_quoted(p, '\'');
	}
	if (c == '`') {
		p->k = T_QIDENT;
		return lex_quoted(p, '`');
	}
	if (c == '@') {
		p->k = T_DATE;
		lex_date(p);
		return true;
	}
	if (is_dig(c)) {
		p->k = T_NUMBER;
		lex_number(p);
		return true;
	}
	if (is_alpha(c)) {
		p->k = T_IDENT;
		lex_word(p);
		return true;
	}
	if (c == '%' || c == '$') {
		p->pos++;
		p->k = c == '%' ? T_VAR : T_SPECIAL;
		if (p->pos < p->len && (p->src[p->pos] == '`' || p->src[p->pos] == '\''))
			return lex_quoted(p, p->src[p->pos]);
		if (p->pos >= p->len || !is_alpha(p->src[p->pos]))
			return perr(p, p->toff, "expected a name after '%c'", c) == CV_OK;
		lex_word(p);
		return true;
	}
	p->k = T_OP;
	return lex_op(p);
}

static bool tok_is(const parser_t *p, tkind k, const char *s)
{
	return p->k == k && strlen(s) == p->tlen && memcmp(p->tok, s, p->tlen) == 0;
}

static bool op_is(const parser_t *p, const char *s)
{
	return tok_is(p, T_OP, s);
}

static char *tok_dup(parser_t *p)
{
	char *s = cv_pool_strndup(&p->e->pool, p->tok, p->tlen);

	if (!s)
		p->rc = CV_E_NOMEM;
	return s;
}

/* ---- parser -------------------------------------------------------------- */

static fp_node_t *new_node(parser_t *p, fp_nkind k, size_t off)
{
	fp_node_t *n = cv_pool_alloc(&p->e->pool, sizeof(*n));

	if (!n) {
		p->rc = CV_E_NOMEM;
		return NULL;
	}
	n->kind = k;
	n->off = off;
	return n;
}

static fp_node_t *parse_expr(parser_t *p, int minprec);

static bool expect(parser_t *p, const char *op)
{
	if (!op_is(p, op)) {
		perr(p, p->toff, "expected '%s'", op);
		return false;
	}
	return next(p);
}

/* Binary operator of the current token: its precedence (1 lowest), 0 if none. */
static int binop(const parser_t *p, fp_op *op)
{
	static const struct {
		tkind k;
		const char *s;
		fp_op op;
		int prec;
	} t[] = {
		{T_IDENT, "implies", OP_IMPLIES, 1}, {T_IDENT, "or", OP_OR, 2},   {T_IDENT, "xor", OP_XOR, 2},
		{T_IDENT, "and", OP_AND, 3},         {T_IDENT, "in", OP_IN, 4},   {T_IDENT, "contains", OP_CONTAINS, 4},
		{T_OP, "=", OP_EQ, 5},               {T_OP, "!=", OP_NE, 5},      {T_OP, "~", OP_EQUIV, 5},
		{T_OP, "!~", OP_NEQUIV, 5},          {T_OP, "<", OP_LT, 6},       {T_OP, ">", OP_GT, 6},
		{T_OP, "<=", OP_LE, 6},              {T_OP, ">=", OP_GE, 6},      {T_OP, "|", OP_UNION, 7},
		{T_IDENT, "is", OP_IS, 8},           {T_IDENT, "as", OP_AS, 8},   {T_OP, "+", OP_PLUS, 9},
		{T_OP, "-", OP_MINUS, 9},            {T_OP, "&", OP_CONCAT, 9},   {T_OP, "*", OP_MUL, 10},
		{T_OP, "/", OP_DIV, 10},             {T_IDENT, "div", OP_IDIV, 10}, {T_IDENT, "mod", OP_MOD, 10},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (tok_is(p, t[i].k, t[i].s)) {
			*op = t[i].op;
			return t[i].prec;
		}
	}
	return 0;
}

/* A type specifier: identifier ('.' identifier)?, as text. */
static const char *parse_type_spec(parser_t *p)
{
	char buf[256];
	size_t n = 0;

	for (;;) {
		if (p->k != T_IDENT && p->k != T_QIDENT) {
			perr(p, p->toff, "expected a type name");
			return NULL;
		}
		if (n + p->tlen + 2 > sizeof(buf)) {
			perr(p, p->toff, "type name too long");
			return NULL;
		}
		if (n)
			buf[n++] = '.';
		memcpy(buf + n, p->tok, p->tlen);
		n += p->tlen;
		if (!next(p))
			return NULL;
		if (!op_is(p, "."))
			break;
		if (!next(p))
			return NULL;
	}
	buf[n] = '\0';
	{
		char *s = cv_pool_strndup(&p->e->pool, buf, n);
		if (!s)
			p->rc = CV_E_NOMEM;
		return s;
	}
}

/* The type named by an argument node (an identifier path): "FHIR.Patient". */
static const char *node_type_name(parser_t *p, const fp_node_t *n)
{
	if (n->kind != N_MEMBER)
		return NULL;
	if (!n->left)
		return n->name;
	if (n->left->kind == N_MEMBER && !n->left->left) {
		char *s = cv_pool_printf(&p->e->pool, "%s.%s", n->left->name, n->name);
		if (!s)
			p->rc = CV_E_NOMEM;
		return s;
	}
	return NULL;
}

static bool parse_args(parser_t *p, fp_node_t *call)
{
	if (!next(p)) /* '(' */
		return false;
	if (op_is(p, ")"))
		return next(p);
	for (;;) {
		fp_node_t *a;
		if (call->nargs >= FP_MAX_ARGS) {
			perr(p, p->toff, "too many arguments");
			return false;
		}
		a = parse_expr(p, 1);
		if (!a)
			return false;
		call->args[call->nargs++] = a;
		if (op_is(p, ","))  {
			if (!next(p))
				return false;
			continue;
		}
		return expect(p, ")");
	}
}

/* name(...) at the current '(' : a function call node on left. */
static fp_node_t *parse_call(parser_t *p, fp_node_t *left, const char *name, size_t off)
{
	fp_node_t *n = new_node(p, N_FUNC, off);
	const fp_fn_t *fn = fp_fn_find(name);

	if (!n)
		return NULL;
	if (!fn) {
		perr(p, off, "unknown function");
		return NULL;
	}
	n->fn = fn;
	n->name = name;
	n->left = left;
	if (!parse_args(p, n))
		return NULL;
	if (n->nargs < fn->min || n->nargs > fn->max) {
		perr(p, off, "wrong number of arguments for %s()", fn->name);
		return NULL;
	}
	if (fn->type_arg) {
		n->tname = node_type_name(p, n->args[0]);
		if (!n->tname) {
			perr(p, off, "%s() takes a type name", fn->name);
			return NULL;
		}
	}
	if (!fn->impl) {
		if (p->err && p->errlen)
			snprintf(p->err, p->errlen, "function %s() is not supported at offset %zu", fn->name, off);
		p->rc = CV_E_UNSUPPORTED;
		return NULL;
	}
	return n;
}

/* identifier or function call, applied to left (NULL: the focus). */
static fp_node_t *parse_invocation(parser_t *p, fp_node_t *left)
{
	size_t off = p->toff;
	char *name;
	fp_node_t *n;
	bool quoted = p->k == T_QIDENT;

	if (p->k != T_IDENT && p->k != T_QIDENT) {
		perr(p, p->toff, "expected a name");
		return NULL;
	}
	name = tok_dup(p);
	if (!name || !next(p))
		return NULL;
	if (!quoted && op_is(p, "("))
		return parse_call(p, left, name, off);
	n = new_node(p, N_MEMBER, off);
	if (!n)
		return NULL;
	n->name = name;
	n->left = left;
	return n;
}

static bool is_calendar_unit(const char *s, size_t n)
{
	static const char *units[] = {"year",   "years",  "month",  "months",  "week",        "weeks",
				      "day",    "days",   "hour",   "hours",   "minute",      "minutes",
				      "second", "seconds", "millisecond", "milliseconds", NULL};

	for (int i = 0; units[i]; i++) {
		if (strlen(units[i]) == n && memcmp(units[i], s, n) == 0)
			return true;
	}
	return false;
}

static fp_node_t *parse_number(parser_t *p)
{
	fp_node_t *n = new_node(p, N_LITERAL, p->toff);
	char *text = tok_dup(p);
	bool dec;

	if (!n || !text)
		return NULL;
	dec = strchr(text, '.') != NULL;
	if (dec) {
		n->lit.kind = CV_FP_DECIMAL;
		n->lit.s = text;
		n->lit.d = strtod(text, NULL);
	} else {
		char *end;
		errno = 0;
		n->lit.i = strtoll(text, &end, 10);
		if (errno) {
			perr(p, p->toff, "integer out of range");
			return NULL;
		}
		n->lit.kind = CV_FP_INTEGER;
		n->lit.d = (double)n->lit.i;
		n->lit.s = text;
	}
	if (!next(p))
		return NULL;
	if (p->k == T_STRING || (p->k == T_IDENT && is_calendar_unit(p->tok, p->tlen))) {
		n->lit.unit = tok_dup(p);
		if (!n->lit.unit)
			return NULL;
		if (n->lit.kind == CV_FP_INTEGER)
			n->lit.d = (double)n->lit.i;
		n->lit.kind = CV_FP_QUANTITY;
		n->lit.b = p->k == T_IDENT; /* calendar unit, not UCUM */
		if (!next(p))
			return NULL;
	}
	return n;
}

static bool valid_date_lit(const char *s, size_t n, cv_fp_kind *kind)
{
	size_t i = 0;

	if (n >= 1 && s[0] == 'T') {
		*kind = CV_FP_TIME;
		for (size_t j = 1; j < n; j++) {
			if (!is_dig(s[j]) && s[j] != ':' && s[j] != '.')
				return false; /* a time has no zone */
		}
		return n >= 3 && is_dig(s[1]) && is_dig(s[2]);
	}
	if (n < 4 || !is_dig(s[0]) || !is_dig(s[1]) || !is_dig(s[2]) || !is_dig(s[3]))
		return false;
	for (i = 0; i < n && s[i] != 'T'; i++)
		;
	*kind = i < n ? CV_FP_DATETIME : CV_FP_DATE;
	if (*kind == CV_FP_DATE) {
		for (size_t j = 0; j < n; j++) {
			if (!is_dig(s[j]) && s[j] != '-')
				return false;
		}
	}
	return true;
}

static fp_node_t *parse_date(parser_t *p)
{
	fp_node_t *n = new_node(p, N_LITERAL, p->toff);
	cv_fp_kind kind;
	char *text;

	if (!n)
		return NULL;
	if (!valid_date_lit(p->tok, p->tlen, &kind)) {
		perr(p, p->toff, "invalid date/time literal");
		return NULL;
	}
	text = kind == CV_FP_TIME ? cv_pool_strndup(&p->e->pool, p->tok + 1, p->tlen - 1) : tok_dup(p);
	if (!text) {
		p->rc = CV_E_NOMEM;
		return NULL;
	}
	if (kind == CV_FP_DATETIME && text[strlen(text) - 1] == 'T')
		text[strlen(text) - 1] = '\0'; /* @2015T: a dateTime of year precision */
	n->lit.kind = kind;
	n->lit.s = text;
	return next(p) ? n : NULL;
}

static fp_node_t *parse_term(parser_t *p)
{
	fp_node_t *n = NULL;

	switch (p->k) {
	case T_NUMBER:
		return parse_number(p);
	case T_DATE:
		return parse_date(p);
	case T_STRING:
		n = new_node(p, N_LITERAL, p->toff);
		if (!n)
			return NULL;
		n->lit.kind = CV_FP_STRING;
		n->lit.s = p->tok;
		return next(p) ? n : NULL;
	case T_VAR:
		n = new_node(p, N_VAR, p->toff);
		if (!n || !(n->name = tok_dup(p)))
			return NULL;
		return next(p) ? n : NULL;
	case T_SPECIAL:
		if (tok_is(p, T_SPECIAL, "this"))
			n = new_node(p, N_THIS, p->toff);
		else if (tok_is(p, T_SPECIAL, "index"))
			n = new_node(p, N_IDX, p->toff);
		else if (tok_is(p, T_SPECIAL, "total"))
			n = new_node(p, N_TOTAL, p->toff);
		else
			perr(p, p->toff, "unknown special variable");
		if (!n)
			return NULL;
		return next(p) ? n : NULL;
	case T_IDENT:
		if (tok_is(p, T_IDENT, "true") || tok_is(p, T_IDENT, "false")) {
			n = new_node(p, N_LITERAL, p->toff);
			if (!n)
				return NULL;
			n->lit.kind = CV_FP_BOOLEAN;
			n->lit.b = p->tok[0] == 't';
			return next(p) ? n : NULL;
		}
		return parse_invocation(p, NULL);
	case T_QIDENT:
		return parse_invocation(p, NULL);
	case T_OP:
		if (op_is(p, "(")) {
			if (!next(p))
				return NULL;
			n = parse_expr(p, 1);
			if (!n || !expect(p, ")"))
				return NULL;
			return n;
		}
		if (op_is(p, "{")) {
			n = new_node(p, N_EMPTY, p->toff);
			if (!n || !next(p) || !expect(p, "}"))
				return NULL;
			return n;
		}
		break;
	default:
		break;
	}
	perr(p, p->toff, p->k == T_EOF ? "unexpected end of expression" : "unexpected token");
	return NULL;
}

static fp_node_t *parse_postfix(parser_t *p)
{
	fp_node_t *n = parse_term(p);

	while (n && !p->rc) {
		if (op_is(p, ".")) {
			if (!next(p))
				return NULL;
			n = parse_invocation(p, n);
		} else if (op_is(p, "[")) {
			fp_node_t *ix = new_node(p, N_INDEX, p->toff);
			if (!ix || !next(p))
				return NULL;
			ix->left = n;
			ix->args[0] = parse_expr(p, 1);
			ix->nargs = 1;
			if (!ix->args[0] || !expect(p, "]"))
				return NULL;
			n = ix;
		} else {
			break;
		}
	}
	return p->rc ? NULL : n;
}

static fp_node_t *parse_unary(parser_t *p)
{
	if (op_is(p, "-") || op_is(p, "+")) {
		fp_node_t *n = new_node(p, N_UNARY, p->toff);
		if (!n)
			return NULL;
		n->op = p->tok[0] == '-' ? OP_MINUS : OP_PLUS;
		if (++p->depth > FP_MAX_AST_DEPTH) {
			too_deep(p);
			return NULL;
		}
		if (!next(p))
			return NULL;
		n->left = parse_unary(p);
		p->depth--;
		return n->left ? n : NULL;
	}
	return parse_postfix(p);
}

static fp_node_t *parse_expr(parser_t *p, int minprec)
{
	fp_node_t *left;
	fp_op op;
	int prec;

	if (++p->depth > FP_MAX_AST_DEPTH) {
		too_deep(p);
		return NULL;
	}
	left = parse_unary(p);
	while (left && (prec = binop(p, &op)) >= minprec && prec > 0) {
		fp_node_t *n = new_node(p, op == OP_IS || op == OP_AS ? N_TYPEOP : N_BINARY, p->toff);
		if (!n || !next(p))
			return NULL;
		n->op = op;
		n->left = left;
		if (n->kind == N_TYPEOP) {
			n->tname = parse_type_spec(p);
			if (!n->tname)
				return NULL;
		} else {
			n->right = parse_expr(p, prec + 1);
			if (!n->right)
				return NULL;
		}
		left = n;
	}
	p->depth--;
	return p->rc ? NULL : left;
}

cv_rc cv_fhirpath_compile(const char *expr, cv_fhirpath_t **out, char *err, size_t errlen)
{
	cv_rc rc = CV_OK;
	parser_t p = {0};
	cv_fhirpath_t *e = NULL;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!expr)
		return CV_E_INVALID;
	p.len = strlen(expr);
	if (p.len > FP_MAX_EXPR) {
		if (err && errlen)
			snprintf(err, errlen, "expression longer than %u bytes", FP_MAX_EXPR);
		return CV_E_LIMIT;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return CV_E_NOMEM;
	cv_pool_init(&e->pool, 0);
	p.e = e;
	p.src = expr;
	p.err = err;
	p.errlen = errlen;
	if (next(&p))
		e->root = parse_expr(&p, 1);
	if (!p.rc && e->root && p.k != T_EOF)
		perr(&p, p.toff, "unexpected token");
	rc = p.rc ? p.rc : (e->root ? CV_OK : CV_E_INVALID);
	if (rc == CV_E_INVALID && err && errlen && !err[0])
		snprintf(err, errlen, "syntax error at offset %zu", p.toff);
	if (rc) {
		cv_fhirpath_free(e);
		return rc;
	}
	*out = e;
	return CV_OK;
}

void cv_fhirpath_free(cv_fhirpath_t *e)
{
	if (!e)
		return;
	cv_pool_release(&e->pool);
	free(e);
}
