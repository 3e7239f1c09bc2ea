// Storage dtypes (f32, bf16, f16 for weights; i32, i64 for fixtures; u8, bool as checkpoints may hold them) and
// scalar conversions to f32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace vlmamba {

enum class DType : std::uint8_t { F32, BF16, F16, I32, I64, U8, BOOL };

constexpr std::size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32: return 4;
        case DType::BF16: return 2;
        case DType::F16: return 2;
        case DType::I32: return 4;
        case DType::I64: return 8;
        case DType::U8: return 1;
        case DType::BOOL: return 1;
    }
    return 0;
}

// Names as safetensors spells them.
constexpr std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "F32";
        case DType::BF16: return "BF16";
        case DType::F16: return "F16";
        case DType::I32: return "I32";
        case DType::I64: return "I64";
        case DType::U8: return "U8";
        case DType::BOOL: return "BOOL";
    }
    return "?";
}

// Returns false for names this library does not store.
inline bool dtype_from_name(std::string_view s, DType& out) {
    for (DType t : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8, DType::BOOL})
        if (s == dtype_name(t)) { out = t; return true; }
    return false;
}

inline float bf16_to_f32(std::uint16_t h) {
    std::uint32_t u = std::uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Round to nearest even, as PyTorch's .to(torch.bfloat16).
inline std::uint16_t f32_to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40);  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t(u >> 16);
}

inline float f16_to_f32(std::uint16_t h) {
    std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t man = h & 0x3ffu;
    std::uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            do { man <<= 1; ++e; } while ((man & 0x400u) == 0);
            u = sign | std::uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | man << 13;
    } else {
        u = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Round to nearest even.
inline std::uint16_t f32_to_f16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    std::uint32_t sign = (u >> 16) & 0x8000u;
    std::uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);
    if (a >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // overflow to inf
    if (a < 0x38800000u) {                                        // subnormal or zero
        float af;
        std::memcpy(&af, &a, 4);
        float scaled = af * 16777216.0f;  // 2^24: one f16 subnormal ulp is 2^-24
        std::uint32_t m = std::uint32_t(scaled);
        float rem = scaled - float(m);
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
        return std::uint16_t(sign | m);
    }
    std::uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return std::uint16_t(sign | ((r - 0x38000000u) >> 13));
}

}  // namespace vlmamba
