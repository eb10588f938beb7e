// simdgroup_matrix for msl-emu. Metal spreads a matrix over the 32 lanes of a
// simdgroup; here every lane holds the whole matrix, which gives the same
// results because these operations are uniform across the simdgroup. Loads and
// stores first meet the other lanes at a simdgroup barrier so that memory
// accesses of consecutive matrix operations keep their lock-step order.
#pragma once

namespace metal {

template <class T, int Cols, int Rows> struct simdgroup_matrix {
  T __e[Rows * Cols];  // row-major
  simdgroup_matrix() = default;
  // Metal's scalar constructor makes a diagonal matrix.
  simdgroup_matrix(T diagonal) {
    for (int r = 0; r < Rows; r++)
      for (int c = 0; c < Cols; c++) __e[r * Cols + c] = r == c ? diagonal : (T)0;
  }
};
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<bfloat, 8, 8> simdgroup_bfloat8x8;

template <class T, int Cols, int Rows = Cols>
__MSL_INLINE simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T v) {
  simdgroup_matrix<T, Cols, Rows> m;
  for (int i = 0; i < Rows * Cols; i++) m.__e[i] = v;
  return m;
}

#if __MSL_EMU_STRICT
template <class T, int C, int R, class P>
void simdgroup_load(__msl_site s, simdgroup_matrix<T, C, R>& d, P* src, ulong elements_per_row = C,
                    ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false);
template <class T, int C, int R, class P>
void simdgroup_load(simdgroup_matrix<T, C, R>& d, P* src, ulong elements_per_row = C,
                    ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false);
template <class T, int C, int R, class P>
void simdgroup_store(__msl_site s, simdgroup_matrix<T, C, R> m, P* dst, ulong elements_per_row = C,
                     ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false);
template <class T, int C, int R, class P>
void simdgroup_store(simdgroup_matrix<T, C, R> m, P* dst, ulong elements_per_row = C,
                     ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false);
#else
template <class T, int C, int R, class P>
__MSL_INLINE void simdgroup_load(__msl_site s, simdgroup_matrix<T, C, R>& d, P* src, ulong elements_per_row = C,
                                 ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false) {
  simdgroup_barrier(s, mem_flags::mem_none);
  P* base = src + matrix_origin.y * elements_per_row + matrix_origin.x;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++)
      d.__e[r * C + c] = (T)(transpose_matrix ? base[c * elements_per_row + r] : base[r * elements_per_row + c]);
}
template <class T, int C, int R, class P>
__MSL_INLINE void simdgroup_load(simdgroup_matrix<T, C, R>& d, P* src, ulong elements_per_row = C,
                                 ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false) {
  simdgroup_load(__MSL_NOSITE, d, src, elements_per_row, matrix_origin, transpose_matrix);
}
template <class T, int C, int R, class P>
__MSL_INLINE void simdgroup_store(__msl_site s, simdgroup_matrix<T, C, R> m, P* dst, ulong elements_per_row = C,
                                  ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false) {
  simdgroup_barrier(s, mem_flags::mem_none);
  P* base = dst + matrix_origin.y * elements_per_row + matrix_origin.x;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      if (transpose_matrix) base[c * elements_per_row + r] = m.__e[r * C + c];
      else base[r * elements_per_row + c] = m.__e[r * C + c];
    }
}
template <class T, int C, int R, class P>
__MSL_INLINE void simdgroup_store(simdgroup_matrix<T, C, R> m, P* dst, ulong elements_per_row = C,
                                  ulong2 matrix_origin = ulong2(0), bool transpose_matrix = false) {
  simdgroup_store(__MSL_NOSITE, m, dst, elements_per_row, matrix_origin, transpose_matrix);
}
#endif

// d = a * b + c; products are accumulated in float with fused multiply-adds,
// as a GPU's matrix unit does, and rounded once to T.
template <class T, class TA, class TB, class TC, int M, int N, int K>
__MSL_INLINE void simdgroup_multiply_accumulate(simdgroup_matrix<T, N, M>& d, const simdgroup_matrix<TA, K, M>& a,
                                                const simdgroup_matrix<TB, N, K>& b,
                                                const simdgroup_matrix<TC, N, M>& c) {
#pragma clang fp contract(fast)
  simdgroup_matrix<T, N, M> out;
  for (int i = 0; i < M; i++) {
    float row[N];
    for (int j = 0; j < N; j++) row[j] = (float)c.__e[i * N + j];
    for (int k = 0; k < K; k++) {
      float av = (float)a.__e[i * K + k];
      for (int j = 0; j < N; j++) row[j] += av * (float)b.__e[k * N + j];
    }
    for (int j = 0; j < N; j++) out.__e[i * N + j] = (T)row[j];
  }
  d = out;
}
template <class T, class TA, class TB, int M, int N, int K>
__MSL_INLINE void simdgroup_multiply(simdgroup_matrix<T, N, M>& d, const simdgroup_matrix<TA, K, M>& a,
                                     const simdgroup_matrix<TB, N, K>& b) {
  simdgroup_multiply_accumulate(d, a, b, simdgroup_matrix<T, N, M>((T)0));
}

}  // namespace metal
