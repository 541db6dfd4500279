// Forward kinematics along a kinematic tree and its backward (engines/skinning.py).
//
//   G[b, 0] = L[b, 0],   G[b, j] = G[b, parent[j]] @ L[b, j]   (parent[j] < j)
//
// on 4x4 transforms [B, J, 4, 4]. The backward walks the tree leaves-first:
//   dL[j] = G[parent[j]]^T dG[j],   dG[parent[j]] += dG[j] L[j]^T   (dL[0] = dG[0]).
// One body per task; the whole chain of one body is a few hundred flops, so the gain over
// torch is the ~70 small batched matmuls (and their autograd nodes) it replaces per call.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <cstdint>
#include <vector>

namespace {

template <typename T>
inline void mm4(const T* a, const T* b, T* c) {  // c = a @ b
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 4; ++k) {
      T acc = 0;
      for (int i = 0; i < 4; ++i) acc += a[r * 4 + i] * b[i * 4 + k];
      c[r * 4 + k] = acc;
    }
}

template <typename T>
inline void mm4_tn_add(const T* a, const T* b, T* c) {  // c += a^T @ b
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 4; ++k) {
      T acc = 0;
      for (int i = 0; i < 4; ++i) acc += a[i * 4 + r] * b[i * 4 + k];
      c[r * 4 + k] += acc;
    }
}

template <typename T>
inline void mm4_nt_add(const T* a, const T* b, T* c) {  // c += a @ b^T
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 4; ++k) {
      T acc = 0;
      for (int i = 0; i < 4; ++i) acc += a[r * 4 + i] * b[k * 4 + i];
      c[r * 4 + k] += acc;
    }
}

std::vector<int64_t> parents_vector(const at::Tensor& parents, int64_t J) {
  TORCH_CHECK(parents.dim() == 1 && parents.size(0) == J, "parents must be [J]");
  auto p = parents.to(at::kLong).contiguous();
  std::vector<int64_t> out(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + J);
  TORCH_CHECK(J == 0 || out[0] < 0, "parents[0] must be -1");
  for (int64_t j = 1; j < J; ++j)
    TORCH_CHECK(out[j] >= 0 && out[j] < j, "parents[j] must be in [0, j) for j > 0");
  return out;
}

}  // namespace

at::Tensor fk_forward(at::Tensor local, at::Tensor parents) {
  TORCH_CHECK(local.dim() == 4 && local.size(2) == 4 && local.size(3) == 4,
              "local must be [B, J, 4, 4]");
  local = local.contiguous();
  const int64_t B = local.size(0), J = local.size(1);
  const auto par = parents_vector(parents, J);
  auto G = at::empty_like(local);
  AT_DISPATCH_FLOATING_TYPES(local.scalar_type(), "fk_forward", [&] {
    const scalar_t* L = local.data_ptr<scalar_t>();
    scalar_t* g = G.data_ptr<scalar_t>();
    at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* Lb = L + b * J * 16;
        scalar_t* gb = g + b * J * 16;
        for (int i = 0; i < 16 && J > 0; ++i) gb[i] = Lb[i];
        for (int64_t j = 1; j < J; ++j) mm4(gb + par[j] * 16, Lb + j * 16, gb + j * 16);
      }
    });
  });
  return G;
}

at::Tensor fk_backward(at::Tensor grad_G, at::Tensor local, at::Tensor G, at::Tensor parents) {
  local = local.contiguous();
  G = G.contiguous();
  grad_G = grad_G.to(local.scalar_type()).contiguous();
  const int64_t B = local.size(0), J = local.size(1);
  const auto par = parents_vector(parents, J);
  auto acc = grad_G.clone();  // dG accumulated over children
  auto grad_local = at::zeros_like(local);
  AT_DISPATCH_FLOATING_TYPES(local.scalar_type(), "fk_backward", [&] {
    const scalar_t* L = local.data_ptr<scalar_t>();
    const scalar_t* g = G.data_ptr<scalar_t>();
    scalar_t* a = acc.data_ptr<scalar_t>();
    scalar_t* dl = grad_local.data_ptr<scalar_t>();
    at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* Lb = L + b * J * 16;
        const scalar_t* gb = g + b * J * 16;
        scalar_t* ab = a + b * J * 16;
        scalar_t* db = dl + b * J * 16;
        for (int64_t j = J - 1; j >= 1; --j) {
          const int64_t p = par[j];
          mm4_tn_add(gb + p * 16, ab + j * 16, db + j * 16);
          mm4_nt_add(ab + j * 16, Lb + j * 16, ab + p * 16);
        }
        for (int i = 0; i < 16 && J > 0; ++i) db[i] = ab[i];
      }
    });
  });
  return grad_local;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &fk_forward, "G = chain of local transforms along the tree",
        py::call_guard<py::gil_scoped_release>());
  m.def("backward", &fk_backward, "gradient of the chain w.r.t. the local transforms",
        py::call_guard<py::gil_scoped_release>());
}
