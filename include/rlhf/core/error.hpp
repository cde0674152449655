#pragma once
// Every error type of the library, so that any layer can throw or catch one without including another
// layer. Every message names the argument and the offending shape or value (or the file, or the CUDA call).
#include <cmath>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace rlhf {

struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct shape_error : error {  // sizes that do not agree
  using error::error;
};
struct value_error : error {  // NaN/Inf, empty masks, out-of-range ids
  using error::error;
};
struct config_error : error {  // a setting outside its valid range
  using error::error;
};
struct io_error : error {  // a file that cannot be read or written, or whose contents are malformed (io/)
  using error::error;
};
struct cuda_error : error {  // a failed CUDA call or kernel launch, or a kernel fault reported by the next sync
  using error::error;
};

namespace detail {
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}
}  // namespace detail

template <class E = error, class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw E(detail::cat(parts...));
}

inline void require_size(std::string_view fn, std::string_view arg, std::size_t got, std::size_t want,
                         std::string_view want_name) {
  if (got != want)
    fail<shape_error>(fn, ": '", arg, "' has ", got, " elements but ", want_name, " is ", want);
}

inline void require_nonempty(std::string_view fn, std::string_view arg, std::size_t n) {
  if (n == 0) fail<shape_error>(fn, ": '", arg, "' is an empty batch (0 rows)");
}

inline void require_positive(std::string_view fn, std::string_view setting, double v) {
  if (!(v > 0) || !std::isfinite(v)) fail<config_error>(fn, ": ", setting, " must be > 0 (got ", v, ")");
}

inline void require_in_range(std::string_view fn, std::string_view setting, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi))
    fail<config_error>(fn, ": ", setting, " must be in [", lo, ", ", hi, "] (got ", v, ")");
}

}  // namespace rlhf
