// Feature maps from the NBV renderer's per-pixel kernel lists (engines/render/fast.py):
//   feat[b, :, p] = sum_m w[b, p, m] table[idx[b, p, m], :]  over filled slots (idx >= 0),
// and its gradients w.r.t. the weights and the table. Maps are [B, C, H, W]; per-pixel work
// goes through small tiles of pixels so that the channel-major reads and writes stay in cache.
// Loops are split over bodies only (a single render stays on one thread).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

template <typename T>
inline void axpy(T* y, const T* x, T a, int64_t n) {  // y += a x
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

template <typename T>
inline T dot(const T* x, const T* y, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += x[i] * y[i];
  return acc;
}

constexpr int64_t kTile = 8;  // pixels per tile of the [B, C, H, W] <-> per-pixel transposes

}  // namespace

// Feature map feat[b, :, p] = sum_m w[b, p, m] table[bt, idx[b, p, m], :] over filled slots.
// Output [B, C, H, W]; table [Bt, K, C] with Bt in {1, B}.
at::Tensor features_forward(at::Tensor idx, at::Tensor weights, at::Tensor table) {
  idx = idx.contiguous();
  weights = weights.to(table.scalar_type()).contiguous();
  table = table.contiguous();
  const int64_t B = idx.size(0), H = idx.size(1), W = idx.size(2), M = idx.size(3);
  const int64_t Bt = table.size(0), K = table.size(1), C = table.size(2), P = H * W;
  const int64_t nt = (P + kTile - 1) / kTile;
  auto feat = at::empty({B, C, H, W}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "nbv_features_forward", [&] {
    const int64_t* ia = idx.data_ptr<int64_t>();
    const scalar_t* wa = weights.data_ptr<scalar_t>();
    const scalar_t* ta = table.data_ptr<scalar_t>();
    scalar_t* fa = feat.data_ptr<scalar_t>();
    at::parallel_for(0, B * nt, nt, [&](int64_t t0, int64_t t1) {
      std::vector<scalar_t> f(kTile * C);
      for (int64_t tile = t0; tile < t1; ++tile) {
        const int64_t b = tile / nt, pa = (tile % nt) * kTile, pb = std::min(P, pa + kTile);
        const scalar_t* tb = ta + (Bt == 1 ? 0 : b) * K * C;
        std::fill(f.begin(), f.end(), scalar_t(0));
        for (int64_t p = pa; p < pb; ++p) {
          const int64_t q = b * P + p;
          for (int64_t m = 0; m < M && ia[q * M + m] >= 0; ++m) {
            axpy(f.data() + (p - pa) * C, tb + ia[q * M + m] * C, wa[q * M + m], C);
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* o = fa + (b * C + c) * P;
          for (int64_t p = pa; p < pb; ++p) o[p] = f[(p - pa) * C + c];
        }
      }
    });
  });
  return feat;
}

// Gradients of features_forward from grad [B, C, H, W]: (d weights [B, H, W, M], d table).
std::vector<at::Tensor> features_backward(at::Tensor grad, at::Tensor idx,
                                             at::Tensor weights, at::Tensor table,
                                             bool need_w, bool need_table) {
  idx = idx.contiguous();
  grad = grad.to(table.scalar_type()).contiguous();
  weights = weights.to(table.scalar_type()).contiguous();
  table = table.contiguous();
  const int64_t B = idx.size(0), H = idx.size(1), W = idx.size(2), M = idx.size(3);
  const int64_t Bt = table.size(0), K = table.size(1), C = table.size(2), P = H * W;
  const int64_t nt = (P + kTile - 1) / kTile;
  auto gw = need_w ? at::empty({B, H, W, M}, table.options()) : at::Tensor();
  auto gt = need_table ? at::empty({Bt, K, C}, table.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "nbv_features_backward", [&] {
    const int64_t* ia = idx.data_ptr<int64_t>();
    const scalar_t* wa = weights.data_ptr<scalar_t>();
    const scalar_t* ta = table.data_ptr<scalar_t>();
    const scalar_t* ga = grad.data_ptr<scalar_t>();
    // grad of one tile, per pixel: g[(p - pa) * C + c]
    auto load = [&](int64_t b, int64_t pa, int64_t pb, scalar_t* g) {
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* src = ga + (b * C + c) * P;
        for (int64_t p = pa; p < pb; ++p) g[(p - pa) * C + c] = src[p];
      }
    };
    auto any_slot = [&](int64_t b, int64_t pa, int64_t pb) {
      for (int64_t p = pa; p < pb; ++p) {
        if (ia[(b * P + p) * M] >= 0) return true;
      }
      return false;
    };
    if (need_w) {
      scalar_t* gwa = gw.data_ptr<scalar_t>();
      at::parallel_for(0, B * nt, nt, [&](int64_t t0, int64_t t1) {
        std::vector<scalar_t> g(kTile * C);
        for (int64_t tile = t0; tile < t1; ++tile) {
          const int64_t b = tile / nt, pa = (tile % nt) * kTile, pb = std::min(P, pa + kTile);
          std::fill(gwa + (b * P + pa) * M, gwa + (b * P + pb) * M, scalar_t(0));
          if (!any_slot(b, pa, pb)) continue;
          const scalar_t* tb = ta + (Bt == 1 ? 0 : b) * K * C;
          load(b, pa, pb, g.data());
          for (int64_t p = pa; p < pb; ++p) {
            const int64_t q = b * P + p;
            for (int64_t m = 0; m < M && ia[q * M + m] >= 0; ++m) {
              gwa[q * M + m] = dot(tb + ia[q * M + m] * C, g.data() + (p - pa) * C, C);
            }
          }
        }
      });
    }
    if (need_table) {
      scalar_t* gta = gt.data_ptr<scalar_t>();
      at::parallel_for(0, Bt, 1, [&](int64_t b0, int64_t b1) {
        std::vector<scalar_t> g(kTile * C);
        for (int64_t bt = b0; bt < b1; ++bt) {
          scalar_t* gtb = gta + bt * K * C;
          std::fill(gtb, gtb + K * C, scalar_t(0));
          const int64_t ba = Bt == 1 ? 0 : bt, bb = Bt == 1 ? B : bt + 1;
          for (int64_t b = ba; b < bb; ++b) {
            for (int64_t pa = 0; pa < P; pa += kTile) {
              const int64_t pb = std::min(P, pa + kTile);
              if (!any_slot(b, pa, pb)) continue;
              load(b, pa, pb, g.data());
              for (int64_t p = pa; p < pb; ++p) {
                const int64_t q = b * P + p;
                for (int64_t m = 0; m < M && ia[q * M + m] >= 0; ++m) {
                  axpy(gtb + ia[q * M + m] * C, g.data() + (p - pa) * C, wa[q * M + m], C);
                }
              }
            }
          }
        }
      });
    }
  });
  return {gw, gt};
}

