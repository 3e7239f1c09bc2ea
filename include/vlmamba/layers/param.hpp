// How layers receive their parameters: by checkpoint name, with the expected shape, from a loader that collects every
// missing name and wrong shape into one error (io/weights.hpp).
#pragma once
#include <functional>
#include <string>

#include "vlmamba/core/tensor.hpp"

namespace vlmamba {

struct ParamSource {
    std::function<bool(const std::string& name)> contains;
    // Returns the tensor as contiguous f32, or an undefined Tensor after recording the problem.
    std::function<Tensor(const std::string& name, const Shape& expected)> fetch;
};

}  // namespace vlmamba
