// The one place that compiles stb_image: each translation unit gets its own static copy, restricted to the
// formats load_image accepts (PNG, JPEG, BMP, GIF), decoding from memory only.
//
// Include this header (directly or through <vlmamba/io/image.hpp>) before any other inclusion of
// <stb/stb_image.h> in the same translation unit: stb's declarations are guarded, so a prior plain inclusion
// would make the functions extern and give duplicate symbols at link time.
#pragma once

#if defined(STBI_INCLUDE_STB_IMAGE_H) && !defined(VLMAMBA_STB_IMAGE_INCLUDED)
#error "<stb/stb_image.h> was included before <vlmamba/io/stb_image_impl.hpp>: include the vlmamba header first"
#endif

#ifndef VLMAMBA_STB_IMAGE_INCLUDED
#define VLMAMBA_STB_IMAGE_INCLUDED

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF

#if defined(__GNUC__)
#pragma GCC diagnostic push
#if defined(__clang__)
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#else
#pragma GCC diagnostic ignored "-Wpragmas"
#endif
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif

#include <stb/stb_image.h>

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

// Keep the configuration from leaking into code that follows.
#undef STB_IMAGE_IMPLEMENTATION
#undef STBI_ONLY_PNG
#undef STBI_ONLY_JPEG
#undef STBI_ONLY_BMP
#undef STBI_ONLY_GIF

#endif  // VLMAMBA_STB_IMAGE_INCLUDED
