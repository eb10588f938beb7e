// Metal math for msl-emu: metal::, metal::fast:: and metal::precise:: functions.
// All are computed in IEEE float (half and bfloat round the float result once),
// so fast:: and precise:: agree; that is the documented precision of msl-emu.
#pragma once

namespace metal {

#define __MSL_F1(NAME, EXPR)                                                                \
  __MSL_INLINE float NAME(float x) { return EXPR; }                                      \
  __MSL_INLINE half NAME(half h) { return (half)NAME((float)h); }                        \
  __MSL_INLINE bfloat NAME(bfloat h) { return (bfloat)NAME((float)h); }                  \
  template <class V> __MSL_INLINE __msl_vec_only<V> NAME(V v) {                           \
    V r;                                                                                  \
    for (int i = 0; i < __msl_vt<V>::n; i++) r[i] = NAME(v[i]);                           \
    return r;                                                                             \
  }
#define __MSL_F2(NAME, EXPR)                                                                \
  __MSL_INLINE float NAME(float x, float y) { return EXPR; }                             \
  __MSL_INLINE half NAME(half a, half b) { return (half)NAME((float)a, (float)b); }      \
  __MSL_INLINE bfloat NAME(bfloat a, bfloat b) { return (bfloat)NAME((float)a, (float)b); } \
  template <class V> __MSL_INLINE __msl_vec_only<V> NAME(V a, V b) {                      \
    V r;                                                                                  \
    for (int i = 0; i < __msl_vt<V>::n; i++) r[i] = NAME(a[i], b[i]);                     \
    return r;                                                                             \
  }                                                                                       \
  template <class V> __MSL_INLINE __msl_vec_only<V> NAME(V a, __msl_scalar_of<V> b) {     \
    V r;                                                                                  \
    for (int i = 0; i < __msl_vt<V>::n; i++) r[i] = NAME(a[i], b);                        \
    return r;                                                                             \
  }

#define __MSL_MATH_FUNCS                                              \
  __MSL_F1(sqrt, __builtin_sqrtf(x))                                  \
  __MSL_F1(rsqrt, 1.0f / __builtin_sqrtf(x))                          \
  __MSL_F1(exp, __builtin_expf(x))                                    \
  __MSL_F1(exp2, __builtin_exp2f(x))                                  \
  __MSL_F1(exp10, __builtin_powf(10.0f, x))                           \
  __MSL_F1(log, __builtin_logf(x))                                    \
  __MSL_F1(log2, __builtin_log2f(x))                                  \
  __MSL_F1(log10, __builtin_log10f(x))                                \
  __MSL_F1(sin, __builtin_sinf(x))                                    \
  __MSL_F1(cos, __builtin_cosf(x))                                    \
  __MSL_F1(tan, __builtin_tanf(x))                                    \
  __MSL_F1(asin, __builtin_asinf(x))                                  \
  __MSL_F1(acos, __builtin_acosf(x))                                  \
  __MSL_F1(atan, __builtin_atanf(x))                                  \
  __MSL_F1(sinh, __builtin_sinhf(x))                                  \
  __MSL_F1(cosh, __builtin_coshf(x))                                  \
  __MSL_F1(tanh, __builtin_tanhf(x))                                  \
  __MSL_F1(asinh, __builtin_asinhf(x))                                \
  __MSL_F1(acosh, __builtin_acoshf(x))                                \
  __MSL_F1(atanh, __builtin_atanhf(x))                                \
  __MSL_F1(sinpi, __builtin_sinf(x * 3.14159265358979323846f))        \
  __MSL_F1(cospi, __builtin_cosf(x * 3.14159265358979323846f))        \
  __MSL_F1(floor, __builtin_floorf(x))                                \
  __MSL_F1(ceil, __builtin_ceilf(x))                                  \
  __MSL_F1(round, __builtin_roundf(x))                                \
  __MSL_F1(rint, __builtin_rintf(x))                                  \
  __MSL_F1(trunc, __builtin_truncf(x))                                \
  __MSL_F1(fract, __builtin_fminf(x - __builtin_floorf(x), 0x1.fffffep-1f)) \
  __MSL_F1(fabs, __builtin_fabsf(x))                                  \
  __MSL_F1(saturate, __builtin_fminf(__builtin_fmaxf(x, 0.0f), 1.0f)) \
  __MSL_F1(sign, x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (x == x ? 0.0f * x : 0.0f))) \
  __MSL_F1(erf, __builtin_erff(x))                                    \
  __MSL_F2(pow, __builtin_powf(x, y))                                 \
  __MSL_F2(powr, __builtin_powf(x, y))                                \
  __MSL_F2(atan2, __builtin_atan2f(x, y))                             \
  __MSL_F2(fmod, __builtin_fmodf(x, y))                               \
  __MSL_F2(fmin, __builtin_fminf(x, y))                               \
  __MSL_F2(fmax, __builtin_fmaxf(x, y))                               \
  __MSL_F2(copysign, __builtin_copysignf(x, y))                       \
  __MSL_F2(step, y < x ? 0.0f : 1.0f)                                 \
  __MSL_F2(divide, x / y)

__MSL_MATH_FUNCS

namespace fast {
__MSL_MATH_FUNCS
}
namespace precise {
__MSL_MATH_FUNCS
}

// ---- functions defined for every arithmetic scalar type --------------------
#define __MSL_FOR_FLOATS(X) X(float) X(half) X(bfloat)
#define __MSL_FOR_INTS(X) X(int) X(uint) X(short) X(ushort) X(char) X(uchar) X(long) X(ulong)

#define __MSL_MINMAX_F(T)                                                            \
  __MSL_INLINE T min(T a, T b) { return (T)__builtin_fminf((float)a, (float)b); }    \
  __MSL_INLINE T max(T a, T b) { return (T)__builtin_fmaxf((float)a, (float)b); }    \
  __MSL_INLINE T abs(T a) { return (T)__builtin_fabsf((float)a); }                    \
  __MSL_INLINE T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }
#define __MSL_MINMAX_I(T)                                                            \
  __MSL_INLINE T min(T a, T b) { return b < a ? b : a; }                              \
  __MSL_INLINE T max(T a, T b) { return a < b ? b : a; }                              \
  __MSL_INLINE T abs(T a) { return a < (T)0 ? (T)(0 - a) : a; }                      \
  __MSL_INLINE T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }               \
  __MSL_INLINE T absdiff(T a, T b) { return a < b ? (T)(b - a) : (T)(a - b); }
__MSL_FOR_FLOATS(__MSL_MINMAX_F)
__MSL_FOR_INTS(__MSL_MINMAX_I)
#undef __MSL_MINMAX_F
#undef __MSL_MINMAX_I

template <class V> __MSL_INLINE __msl_vec_only<V> min(V a, V b) {
  V r;
  for (int i = 0; i < __msl_vt<V>::n; i++) r[i] = min(a[i], b[i]);
  return r;
}
template <class V> __MSL_INLINE __msl_vec_only<V> max(V a, V b) {
  V r;
  for (int i = 0; i < __msl_vt<V>::n; i++) r[i] = max(a[i], b[i]);
  return r;
}
template <class V> __MSL_INLINE __msl_vec_only<V> min(V a, __msl_scalar_of<V> b) { return min(a, V(b)); }
template <class V> __MSL_INLINE __msl_vec_only<V> max(V a, __msl_scalar_of<V> b) { return max(a, V(b)); }
template <class V> __MSL_INLINE __msl_vec_only<V> abs(V a) {
  V r;
  for (int i = 0; i < __msl_vt<V>::n; i++) r[i] = abs(a[i]);
  return r;
}
template <class V> __MSL_INLINE __msl_vec_only<V> clamp(V x, V lo, V hi) { return min(max(x, lo), hi); }
template <class V> __MSL_INLINE __msl_vec_only<V> clamp(V x, __msl_scalar_of<V> lo, __msl_scalar_of<V> hi) {
  return min(max(x, V(lo)), V(hi));
}

template <class T> __MSL_INLINE T mix(T x, T y, T a) { return x + (y - x) * a; }
template <class V> __MSL_INLINE __msl_vec_only<V> mix(V x, V y, __msl_scalar_of<V> a) { return x + (y - x) * a; }
template <class T> __MSL_INLINE T fma(T a, T b, T c) {
  if constexpr (__msl_vt<T>::n > 0) {
    T r;
    for (int i = 0; i < __msl_vt<T>::n; i++) r[i] = fma(a[i], b[i], c[i]);
    return r;
  } else {
    return (T)__builtin_fmaf((float)a, (float)b, (float)c);
  }
}
template <class T> __MSL_INLINE T smoothstep(T e0, T e1, T x) {
  T t = clamp((x - e0) / (e1 - e0), T(0), T(1));
  return t * t * (T(3) - T(2) * t);
}

// select(a, b, c) is c ? b : a, element-wise for vectors.
template <class T, class C> __MSL_INLINE T select(T a, T b, C c) {
  if constexpr (__msl_vt<T>::n > 0) {
    T r;
    for (int i = 0; i < __msl_vt<T>::n; i++) {
      if constexpr (__msl_vt<C>::n > 0) r[i] = c[i] ? b[i] : a[i];
      else r[i] = c ? b[i] : a[i];
    }
    return r;
  } else {
    return c ? b : a;
  }
}

template <class V> __MSL_INLINE bool all(V v) {
  if constexpr (__msl_vt<V>::n > 0) {
    for (int i = 0; i < __msl_vt<V>::n; i++) if (!v[i]) return false;
    return true;
  } else {
    return (bool)v;
  }
}
template <class V> __MSL_INLINE bool any(V v) {
  if constexpr (__msl_vt<V>::n > 0) {
    for (int i = 0; i < __msl_vt<V>::n; i++) if (v[i]) return true;
    return false;
  } else {
    return (bool)v;
  }
}

#define __MSL_CLASSIFY(NAME, EXPR)                                                   \
  template <class T> __MSL_INLINE auto NAME(T v) {                                   \
    if constexpr (__msl_vt<T>::n > 0) {                                              \
      metal::vec<bool, __msl_vt<T>::n> r;                                            \
      for (int i = 0; i < __msl_vt<T>::n; i++) r[i] = NAME(v[i]);                    \
      return r;                                                                      \
    } else {                                                                         \
      float x = (float)v;                                                            \
      return (bool)(EXPR);                                                           \
    }                                                                                \
  }
__MSL_CLASSIFY(isnan, __builtin_isnan(x))
__MSL_CLASSIFY(isinf, __builtin_isinf(x))
__MSL_CLASSIFY(isfinite, __builtin_isfinite(x))
__MSL_CLASSIFY(signbit, __builtin_signbit(x))
#undef __MSL_CLASSIFY

// ---- geometric ---------------------------------------------------------------
template <class V> __MSL_INLINE __msl_scalar_of<V> dot(V a, V b) {
  typedef __msl_scalar_of<V> E;
  E s = (E)0;
  if constexpr (__is_same(E, float) && !__is_class(V) && sizeof(V) == 16) {
    V p = a * b;
    // Keeps the products one (128-bit) vector register: otherwise clang scalarises
    // them and rebuilds the operands lane by lane (e.g. an int8 vector byte by byte).
#if defined(__x86_64__)
    __asm__("" : "+x"(p));
#elif defined(__aarch64__)
    __asm__("" : "+w"(p));
#endif
    for (int i = 0; i < __msl_vt<V>::n; i++) s += p[i];
  } else {
    for (int i = 0; i < __msl_vt<V>::n; i++) s += a[i] * b[i];
  }
  return s;
}
template <class V> __MSL_INLINE __msl_scalar_of<V> length_squared(V a) { return dot(a, a); }
template <class V> __MSL_INLINE __msl_scalar_of<V> length(V a) { return sqrt(dot(a, a)); }
template <class V> __MSL_INLINE __msl_scalar_of<V> distance(V a, V b) { return length(a - b); }
template <class V> __MSL_INLINE V normalize(V a) { return a * rsqrt(dot(a, a)); }
template <class V> __MSL_INLINE V cross(V a, V b) { return a.yzx * b.zxy - a.zxy * b.yzx; }

// ---- integer functions ---------------------------------------------------------
template <class T> __MSL_INLINE T popcount(T x) {
  if constexpr (__msl_vt<T>::n > 0) {
    T r;
    for (int i = 0; i < __msl_vt<T>::n; i++) r[i] = popcount(x[i]);
    return r;
  } else {
    return (T)__builtin_popcountll((unsigned long long)(typename __msl_remove_cv<T>::type)x &
                                   (sizeof(T) == 8 ? ~0ull : ((1ull << (8 * sizeof(T))) - 1)));
  }
}
template <class T> __MSL_INLINE T clz(T x) {
  unsigned long long u = (unsigned long long)x & (sizeof(T) == 8 ? ~0ull : ((1ull << (8 * sizeof(T))) - 1));
  return u == 0 ? (T)(8 * sizeof(T)) : (T)(__builtin_clzll(u) - (64 - 8 * (int)sizeof(T)));
}
template <class T> __MSL_INLINE T ctz(T x) {
  unsigned long long u = (unsigned long long)x & (sizeof(T) == 8 ? ~0ull : ((1ull << (8 * sizeof(T))) - 1));
  return u == 0 ? (T)(8 * sizeof(T)) : (T)__builtin_ctzll(u);
}
template <class T> __MSL_INLINE T extract_bits(T x, uint offset, uint bits) {
  if (bits == 0) return (T)0;
  unsigned long long u = (unsigned long long)x >> offset;
  unsigned long long m = bits >= 64 ? ~0ull : ((1ull << bits) - 1);
  return (T)(u & m);
}
template <class T> __MSL_INLINE T insert_bits(T base, T insert, uint offset, uint bits) {
  unsigned long long m = (bits >= 64 ? ~0ull : ((1ull << bits) - 1)) << offset;
  return (T)(((unsigned long long)base & ~m) | (((unsigned long long)insert << offset) & m));
}
template <class T> __MSL_INLINE T mulhi(T a, T b) {
  return (T)(((__int128)a * (__int128)b) >> (8 * sizeof(T)));
}
template <class T> __MSL_INLINE T rotate(T v, T i) {
  const unsigned w = 8 * sizeof(T);
  unsigned s = (unsigned)i % w;
  return s == 0 ? v : (T)((v << s) | (v >> (w - s)));
}

template <class T> struct numeric_limits;
#define __MSL_LIMITS(T, LO, HI, EPS, INF)                                      \
  template <> struct numeric_limits<T> {                                       \
    static constexpr bool is_specialized = true;                               \
    static constexpr T min() { return LO; }                                    \
    static constexpr T lowest() { return -(HI); }                              \
    static constexpr T max() { return HI; }                                    \
    static constexpr T epsilon() { return EPS; }                               \
    static constexpr T infinity() { return INF; }                              \
    static constexpr T quiet_NaN() { return __builtin_nanf(""); }              \
  };
__MSL_LIMITS(float, 0x1p-126f, 0x1.fffffep127f, 0x1p-23f, __builtin_inff())
__MSL_LIMITS(half, (half)0x1p-14f, (half)65504.0f, (half)0x1p-10f, (half)__builtin_inff())
#undef __MSL_LIMITS
#define __MSL_ILIMITS(T, LO, HI)                                  \
  template <> struct numeric_limits<T> {                          \
    static constexpr bool is_specialized = true;                  \
    static constexpr T min() { return LO; }                       \
    static constexpr T lowest() { return LO; }                    \
    static constexpr T max() { return HI; }                       \
  };
__MSL_ILIMITS(int, (int)0x80000000u, 0x7fffffff)
__MSL_ILIMITS(uint, 0u, 0xffffffffu)
__MSL_ILIMITS(short, (short)-32768, (short)32767)
__MSL_ILIMITS(ushort, (ushort)0, (ushort)65535)
__MSL_ILIMITS(char, (char)-128, (char)127)
__MSL_ILIMITS(uchar, (uchar)0, (uchar)255)
__MSL_ILIMITS(long, (long)0x8000000000000000ul, 0x7fffffffffffffffl)
__MSL_ILIMITS(ulong, 0ul, 0xfffffffffffffffful)
#undef __MSL_ILIMITS

template <class A, class B> struct is_same { static constexpr bool value = false; };
template <class A> struct is_same<A, A> { static constexpr bool value = true; };
template <class A, class B> constexpr bool is_same_v = is_same<A, B>::value;
template <bool B, class T = void> using enable_if_t = typename __msl_enable_if<B, T>::type;
template <bool B, class T, class F> struct conditional { typedef T type; };
template <class T, class F> struct conditional<false, T, F> { typedef F type; };
template <bool B, class T, class F> using conditional_t = typename conditional<B, T, F>::type;

}  // namespace metal

#define MAXFLOAT 0x1.fffffep127f
#define HUGE_VALF __builtin_inff()
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")
#define FLT_MAX 0x1.fffffep127f
#define FLT_MIN 0x1p-126f
#define FLT_EPSILON 0x1p-23f
#define HALF_MAX ((half)65504.0f)
#define HALF_MIN ((half)0x1p-14f)
#define HALF_EPSILON ((half)0x1p-10f)
#define MAXHALF ((half)65504.0f)
#define M_PI_F 3.14159265358979323846f
#define M_PI_2_F 1.57079632679489661923f
#define M_E_F 2.71828182845904523536f
#define M_LN2_F 0.693147180559945309417f
#define M_LOG2E_F 1.44269504088896340736f
#define M_SQRT2_F 1.41421356237309504880f
#define M_1_PI_F 0.318309886183790671538f
#define M_2_SQRTPI_F 1.12837916709551257390f
#define M_SQRT1_2_F 0.707106781186547524401f
#define M_PI_H ((half)3.14159265358979323846f)
