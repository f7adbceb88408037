/*
 * banned.h - functions custos code must not call (after git's banned.h).
 *
 * Every custos .c file includes it after all its other includes (a system
 * header included later would see the macros).  Each banned name expands to
 * an undeclared identifier, so a call fails to compile and the error names
 * the replacement.
 */
#ifndef CUSTOS_BANNED_H
#define CUSTOS_BANNED_H

#define BANNED(func) sorry_##func##_is_banned_in_custos

#undef strcpy
#define strcpy(x, y) BANNED(strcpy_use_snprintf_or_memcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat_use_snprintf)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy_use_snprintf)
#undef sprintf
#define sprintf(...) BANNED(sprintf_use_snprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf_use_vsnprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok_use_strtok_r_or_a_parser)
#undef atoi
#define atoi(x) BANNED(atoi_use_strtol_with_checks)
#undef atol
#define atol(x) BANNED(atol_use_strtoll_with_checks)
#undef gets
#define gets(x) BANNED(gets)

#endif
