// Umbrella header: every public vlmamba header.
#pragma once
#include "vlmamba/config.hpp"
#include "vlmamba/core/dtype.hpp"
#include "vlmamba/core/error.hpp"
#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/shape.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/gemm.hpp"
#include "vlmamba/ops/norm.hpp"
#include "vlmamba/ops/reduce.hpp"
#include "vlmamba/ops/softmax.hpp"
