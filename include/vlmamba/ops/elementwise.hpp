// Fused elementwise math: include this to write `Tensor y = a * silu(z) + x * D;`.
#pragma once
#include "vlmamba/core/assign.hpp"
#include "vlmamba/core/expr.hpp"
#include "vlmamba/core/functors.hpp"
