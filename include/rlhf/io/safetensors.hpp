#pragma once
// Checkpoints in the safetensors format: read any file the format allows; write float32 tensors, or any dtype's
// raw bytes.
//
//   [u64 little-endian N][N bytes of JSON header, space-padded][data buffer]
//   header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
//   offsets are relative to the start of the data buffer; tensors are row-major, little-endian, and
//   together cover the buffer exactly (no overlaps, no holes).
//
// Loading reads the length and the header first and validates every field (nesting at most 64 deep, offsets
// inside the file) before it maps the file read-only; each problem is an io_error naming the file and what is
// wrong, and no other exception leaves it. The file must not be truncated while a Safetensors maps it (the
// saver below replaces files by rename, which is safe). Saving goes through io/atomic_file.hpp (a temporary
// <path>.tmp-<random>, fsynced and renamed over <path>), so a crash never leaves a half-written checkpoint.
// docs/io/safetensors.md. POSIX only (open/mmap).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "rlhf/core/error.hpp"  // rlhf::io_error
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/untrusted.hpp"  // detail::clip, json_brief, max_json_depth

namespace rlhf::io {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

// Every fixed-size dtype of the format ("BOOL", "U8", ... as written in the header).
enum class Dtype { boolean, u8, i8, f8_e4m3, f8_e5m2, i16, u16, f16, bf16, i32, u32, f32, i64, u64, f64 };

struct DtypeSpec {
  Dtype dtype;
  std::string_view name;
  std::size_t size;
};
inline constexpr DtypeSpec dtype_specs[] = {
    {Dtype::boolean, "BOOL", 1},    {Dtype::u8, "U8", 1},   {Dtype::i8, "I8", 1},   {Dtype::f8_e4m3, "F8_E4M3", 1},
    {Dtype::f8_e5m2, "F8_E5M2", 1}, {Dtype::i16, "I16", 2}, {Dtype::u16, "U16", 2}, {Dtype::f16, "F16", 2},
    {Dtype::bf16, "BF16", 2},       {Dtype::i32, "I32", 4}, {Dtype::u32, "U32", 4}, {Dtype::f32, "F32", 4},
    {Dtype::i64, "I64", 8},         {Dtype::u64, "U64", 8}, {Dtype::f64, "F64", 8},
};

constexpr std::string_view dtype_name(Dtype d) {
  for (const auto& s : dtype_specs)
    if (s.dtype == d) return s.name;
  return "?";
}
constexpr std::size_t dtype_size(Dtype d) {
  for (const auto& s : dtype_specs)
    if (s.dtype == d) return s.size;
  return 0;
}
constexpr std::optional<Dtype> parse_dtype(std::string_view name) {
  for (const auto& s : dtype_specs)
    if (s.name == name) return s.dtype;
  return std::nullopt;
}

// One tensor to write, row-major: float32 values in `data` (dtype f32), or, for any dtype, the values'
// little-endian bytes in `bytes` (product(shape) · dtype_size(dtype) of them; `data` then stays null).
struct TensorView {
  std::string name;
  Dtype dtype = Dtype::f32;
  std::vector<std::size_t> shape;
  const float* data = nullptr;
  const void* bytes = nullptr;
};

// One tensor of a loaded file; [begin, end) are byte offsets into the data buffer.
struct TensorInfo {
  std::string name;
  Dtype dtype;
  std::vector<std::size_t> shape;
  std::size_t begin = 0, end = 0;
  std::size_t numel() const {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

namespace detail {

inline constexpr std::uint64_t max_header_bytes = 100'000'000;  // as the reference implementation

// Reads n bytes at `offset`; an empty string on success, else why not.
inline std::string read_at(int fd, std::uint64_t offset, void* out, std::size_t n) {
  auto* p = static_cast<char*>(out);
  for (std::size_t got = 0; got < n;) {
    const ssize_t r = ::pread(fd, p + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return std::strerror(errno);
    if (r == 0) return "the file shrank while being read";
    got += static_cast<std::size_t>(r);
  }
  return {};
}

struct Fd {  // closes on scope exit
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

inline std::string shape_str(std::span<const std::size_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size() && i < 16; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() > 16) s += ", ... (" + std::to_string(shape.size()) + " dims)";
  return s + "]";
}

// Product of the dims, or nullopt when it overflows size_t.
inline std::optional<std::size_t> checked_numel(std::span<const std::size_t> shape, std::size_t elem_size = 1) {
  std::size_t n = elem_size;
  for (auto d : shape)
    if (d != 0 && n > SIZE_MAX / d)
      return std::nullopt;
    else
      n *= d;
  return n;
}

inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant · 2⁻²⁴, exact in float
    const float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  const std::uint32_t bits = exp == 31 ? sign | 0x7f800000u | (mant << 13)  // Inf / NaN, payload kept
                                       : sign | ((exp + 112) << 23) | (mant << 13);
  return std::bit_cast<float>(bits);
}

inline float bf16_to_f32(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }

template <class T>
T load_le(const std::byte* p) {  // unaligned read; the host is little-endian
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace detail

// A loaded, validated file. Maps the whole file read-only; cheap to copy (the mapping is shared).
class Safetensors {
 public:
  static Safetensors load(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data-buffer order
  bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
  const TensorInfo& info(std::string_view name) const;

  // The raw little-endian bytes of tensor `name`.
  std::span<const std::byte> bytes(std::string_view name) const {
    const auto& t = info(name);
    return {data_ + t.begin, t.end - t.begin};
  }

  // Copies tensor `name` into `out` as float32, converting from F16, BF16 or F64, after checking that its
  // shape equals `expected_shape` and that `out` holds product(expected_shape) values.
  void read_f32(std::string_view name, std::span<const std::size_t> expected_shape, std::span<float> out) const;
  void read_f32(std::string_view name, std::initializer_list<std::size_t> expected_shape, std::span<float> out) const {
    read_f32(name, std::span<const std::size_t>(expected_shape.begin(), expected_shape.size()), out);
  }

 private:
  template <class... Parts>
  [[noreturn]] void fail_file(const Parts&... parts) const {
    fail<io_error>("safetensors '", path_.string(), "': ", parts...);
  }
  void parse_header(std::string_view header, std::size_t buffer_size);
  void parse_entry(const std::string& name, const nlohmann::json& entry, std::size_t buffer_size);
  void check_layout(std::size_t buffer_size) const;

  std::filesystem::path path_;
  std::shared_ptr<const std::byte> file_;    // the whole file, mapped
  const std::byte* data_ = nullptr;          // start of the data buffer inside file_
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in tensors_
};

inline Safetensors Safetensors::load(const std::filesystem::path& path) {
  Safetensors st;
  st.path_ = path;

  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused as not a regular file).
  const detail::Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (f.fd < 0) st.fail_file("cannot open: ", detail::errno_str());
  struct stat sb {};
  if (::fstat(f.fd, &sb) != 0) st.fail_file("cannot stat: ", detail::errno_str());
  if (!S_ISREG(sb.st_mode)) st.fail_file(S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
  const auto size = static_cast<std::uint64_t>(sb.st_size);

  if (size < 8) st.fail_file("file is ", size, " bytes, shorter than the 8-byte header length");
  std::uint64_t n = 0;
  if (const auto why = detail::read_at(f.fd, 0, &n, 8); !why.empty())
    st.fail_file("cannot read the header length: ", why);
  if (n > detail::max_header_bytes)
    st.fail_file("header length ", n, " is absurdly large (limit ", detail::max_header_bytes, " bytes)");
  if (n > size - 8)
    st.fail_file("header length ", n, " runs past the end of the file (", size, " bytes, so at most ", size - 8,
                 " header bytes)");
  std::string header(n, '\0');
  if (const auto why = detail::read_at(f.fd, 8, header.data(), n); !why.empty())
    st.fail_file("cannot read the ", n, "-byte header: ", why);
  if (size > SIZE_MAX) st.fail_file("is ", size, " bytes, more than this machine can address");
  st.parse_header(header, static_cast<std::size_t>(size - 8 - n));

  // Only now, with every tensor's range known to lie inside the file, are the tensor bytes touched.
  void* const map = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (map == MAP_FAILED) st.fail_file("cannot map its ", size, " bytes: ", detail::errno_str());
  st.file_ = std::shared_ptr<const std::byte>(static_cast<const std::byte*>(map), [size](const std::byte* p) {
    ::munmap(const_cast<std::byte*>(p), static_cast<std::size_t>(size));
  });
  st.data_ = st.file_.get() + 8 + n;
  return st;
}

inline void Safetensors::parse_header(std::string_view header, std::size_t buffer_size) {
  // nlohmann keeps one value per duplicate key; the callback notices the duplicates first.
  std::vector<std::set<std::string>> keys;  // one per open object
  std::string current, duplicate;           // current top-level key; first duplicate found, as a path
  const auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= detail::max_json_depth)
      fail_file("header nests JSON more than ", detail::max_json_depth, " levels deep");
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end) keys.pop_back();
    if (event == E::key) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (depth == 1) current = detail::clip(k);
      if (!keys.back().insert(k).second && duplicate.empty())
        duplicate = depth == 1 ? "'" + detail::clip(k) + "'" : "'" + detail::clip(k) + "' inside '" + current + "'";
    }
    return true;
  };
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(header.begin(), header.end(), on_event);
  } catch (const nlohmann::json::parse_error& e) {
    fail_file("header is not valid JSON at byte ", e.byte, " of the ", header.size(),
              "-byte header: ", detail::clip(e.what(), 200));
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range for a number such as 1e999
    fail_file("header cannot be read as JSON: ", detail::clip(e.what(), 200));
  }
  if (!duplicate.empty()) fail_file("header has the key ", duplicate, " more than once");
  if (!root.is_object()) fail_file("header is a JSON ", root.type_name(), ", not an object");

  for (const auto& [name, entry] : root.items()) {
    if (name != "__metadata__") {
      parse_entry(name, entry, buffer_size);
      continue;
    }
    if (entry.is_null()) continue;
    if (!entry.is_object()) fail_file("__metadata__ is a JSON ", entry.type_name(), ", not an object of strings");
    for (const auto& [k, v] : entry.items()) {
      if (!v.is_string())
        fail_file("__metadata__ value of '", detail::clip(k), "' is a JSON ", v.type_name(), ", not a string");
      metadata_.emplace(k, v.get<std::string>());
    }
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  check_layout(buffer_size);
}

inline void Safetensors::parse_entry(const std::string& name, const nlohmann::json& entry, std::size_t buffer_size) {
  const std::string shown = detail::clip(name);  // for messages
  if (!entry.is_object()) fail_file("tensor '", shown, "' is a JSON ", entry.type_name(), ", not an object");
  const auto field = [&](const char* key) -> const nlohmann::json& {
    const auto it = entry.find(key);
    if (it == entry.end()) fail_file("tensor '", shown, "' has no \"", key, "\" field");
    return *it;
  };
  const auto& dtype = field("dtype");
  const auto& shape = field("shape");
  const auto& offsets = field("data_offsets");

  TensorInfo t{.name = name, .dtype = Dtype::f32};
  if (!dtype.is_string()) fail_file("tensor '", shown, "': \"dtype\" is a JSON ", dtype.type_name(), ", not a string");
  const auto d = parse_dtype(dtype.get_ref<const std::string&>());
  if (!d) fail_file("tensor '", shown, "' has unknown dtype ", detail::json_brief(dtype));
  t.dtype = *d;

  if (!shape.is_array()) fail_file("tensor '", shown, "': \"shape\" is a JSON ", shape.type_name(), ", not an array");
  for (const auto& dim : shape) {
    if (!dim.is_number_unsigned())
      fail_file("tensor '", shown, "': \"shape\" ", detail::json_brief(shape), " holds ", detail::json_brief(dim),
                ", not a non-negative integer");
    t.shape.push_back(dim.get<std::size_t>());
  }

  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    fail_file("tensor '", shown, "': \"data_offsets\" is ", detail::json_brief(offsets),
              ", not two non-negative integers");
  t.begin = offsets[0].get<std::size_t>();
  t.end = offsets[1].get<std::size_t>();
  if (t.begin > t.end)
    fail_file("tensor '", shown, "': data_offsets [", t.begin, ", ", t.end, "] end before they begin");

  const auto bytes = detail::checked_numel(t.shape, dtype_size(t.dtype));
  if (!bytes) fail_file("tensor '", shown, "': shape ", detail::shape_str(t.shape), " is too large to address");
  if (t.end - t.begin != *bytes)
    fail_file("tensor '", shown, "': data_offsets [", t.begin, ", ", t.end, "] span ", t.end - t.begin,
              " bytes but shape ", detail::shape_str(t.shape), " of ", dtype_name(t.dtype), " needs ", *bytes);
  if (t.end > buffer_size)
    fail_file("tensor '", shown, "': data_offsets [", t.begin, ", ", t.end, "] run past the end of the data buffer (",
              buffer_size, " bytes after the header): the file is truncated or the offsets are wrong");
  tensors_.push_back(std::move(t));
}

// Tensors (sorted by offset) must tile the data buffer: no overlaps, no holes, nothing after the last.
inline void Safetensors::check_layout(std::size_t buffer_size) const {
  std::size_t covered = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : tensors_) {
    if (t.begin < covered)
      fail_file("tensors '", detail::clip(prev->name), "' [", prev->begin, ", ", prev->end, ") and '",
                detail::clip(t.name), "' [", t.begin, ", ", t.end, ") overlap in the data buffer");
    if (t.begin > covered)
      fail_file("bytes [", covered, ", ", t.begin, ") of the data buffer belong to no tensor (a hole before '",
                detail::clip(t.name), "')");
    covered = t.end;
    if (t.end > t.begin) prev = &t;
  }
  if (covered != buffer_size)
    fail_file(buffer_size - covered, " bytes after the last tensor belong to no tensor (data buffer is ", buffer_size,
              " bytes, tensors cover ", covered, ")");
}

inline const TensorInfo& Safetensors::info(std::string_view name) const {
  const auto it = index_.find(name);
  if (it != index_.end()) return tensors_[it->second];
  std::string some;
  for (std::size_t i = 0; i < tensors_.size() && i < 8; ++i)
    some += (i ? ", '" : "'") + detail::clip(tensors_[i].name) + "'";
  if (tensors_.size() > 8) some += ", ...";
  fail_file("no tensor named '", name, "' (the file has ", tensors_.size(), " tensors", tensors_.empty() ? "" : ": ",
            some, ")");
}

inline void Safetensors::read_f32(std::string_view name, std::span<const std::size_t> expected_shape,
                                  std::span<float> out) const {
  const auto& t = info(name);
  if (!std::equal(t.shape.begin(), t.shape.end(), expected_shape.begin(), expected_shape.end()))
    fail_file("tensor '", name, "' has shape ", detail::shape_str(t.shape), " but ", detail::shape_str(expected_shape),
              " was expected");
  const std::size_t n = t.numel();
  if (out.size() != n)
    fail<shape_error>("Safetensors::read_f32: 'out' has ", out.size(), " elements but tensor '", name, "' of shape ",
                      detail::shape_str(t.shape), " has ", n);
  const std::byte* p = data_ + t.begin;
  switch (t.dtype) {
    case Dtype::f32:
      if (n) std::memcpy(out.data(), p, n * sizeof(float));
      break;
    case Dtype::f16:
      for (std::size_t i = 0; i < n; ++i) out[i] = detail::f16_to_f32(detail::load_le<std::uint16_t>(p + 2 * i));
      break;
    case Dtype::bf16:
      for (std::size_t i = 0; i < n; ++i) out[i] = detail::bf16_to_f32(detail::load_le<std::uint16_t>(p + 2 * i));
      break;
    case Dtype::f64:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(detail::load_le<double>(p + 8 * i));
      break;
    default:
      fail_file("tensor '", name, "' has dtype ", dtype_name(t.dtype),
                "; only F32, F16, BF16 and F64 can be read as float32");
  }
}

// Writes `tensors` and `metadata` to `path` atomically (io/atomic_file.hpp).
// The header is space-padded so the data buffer starts at a multiple of 8 bytes.
inline void save_safetensors(const std::filesystem::path& path, std::span<const TensorView> tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  const std::string where = path.string();
  const auto fail_save = [&](const auto&... parts) { fail<io_error>("save_safetensors '", where, "': ", parts...); };

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> names;
  std::size_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail_save("'__metadata__' cannot name a tensor");
    if (!names.insert(t.name).second) fail_save("tensor name '", t.name, "' appears twice");
    if (t.data != nullptr && t.bytes != nullptr)
      fail_save("tensor '", t.name, "' gives both 'data' and 'bytes'; give one");
    if (t.data != nullptr && t.dtype != Dtype::f32)
      fail_save("tensor '", t.name, "' has dtype ", dtype_name(t.dtype),
                "; only F32 tensors are written from 'data' (give another dtype's values in 'bytes')");
    const auto bytes = detail::checked_numel(t.shape, dtype_size(t.dtype));
    if (!bytes) fail_save("tensor '", t.name, "': shape ", detail::shape_str(t.shape), " is too large");
    if (*bytes > 0 && t.data == nullptr && t.bytes == nullptr)
      fail_save("tensor '", t.name, "' has no data (null pointer)");
    header[t.name] = {
        {"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + *bytes}}};
    offset += *bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail_save("a tensor name or metadata string is not valid UTF-8: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t n = text.size();

  write_file_atomic(
      path,
      [&](AtomicFileSink& out) {
        out.write(&n, sizeof n);
        out.write(text);
        for (const auto& t : tensors)
          out.write(t.bytes != nullptr ? t.bytes : static_cast<const void*>(t.data),
                    *detail::checked_numel(t.shape, dtype_size(t.dtype)));
      },
      "save_safetensors");
}

}  // namespace rlhf::io
