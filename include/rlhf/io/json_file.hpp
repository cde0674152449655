#pragma once
// One reader for every JSON file a program takes from its user (configs, a model's config.json, a checkpoint's
// trainer_state.json, a metrics log's lines), hardened against what a careless or hostile file holds:
//
//   auto doc = rlhf::io::read_json_file(path);                       // JsonLimits{} : 64 MiB, 64 levels
//   auto doc = rlhf::io::read_json_file<nlohmann::ordered_json>(path, {.max_bytes = 1 << 20});
//   auto v   = rlhf::io::parse_json_text(text, "--learning_rate");    // text from elsewhere, named by `where`
//
// - regular files only: a FIFO, a directory or a device (/dev/zero) is refused before it is read (stat first,
//   then an O_NONBLOCK open, so a FIFO never blocks, and fstat of what was opened);
// - at most max_bytes are read (a file growing while read is cut there and refused);
// - the nesting limit is enforced while parsing (nlohmann's parser is iterative and the callback stops it at
//   max_depth), so a million '[' costs a few bytes of stack, and no error message ever prints a large value;
// - a key twice in one object is refused, naming it and the object;
// - every nlohmann exception becomes rlhf::io_error naming the file (or `where`), the key path of the value and
//   a clipped message: a number such as 1e999 is "beyond double's range", not an escaping out_of_range.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/untrusted.hpp"

namespace rlhf::io {

struct JsonLimits {
  std::size_t max_bytes = std::size_t(64) << 20;
  int max_depth = detail::max_json_depth;
  bool allow_duplicate_keys = false;
};

namespace detail {

// A path for a message: quoted, clipped (a path may be thousands of bytes), control bytes (a NUL would end the
// message) as \xNN.
inline std::string quoted_path(const std::filesystem::path& path) {
  std::string s = "'";
  for (const char c : clip(path.native(), 256)) {
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) {
      s += c;
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      s += std::string("\\x") + hex[(c >> 4) & 0xf] + hex[c & 0xf];
    }
  }
  return s + "'";
}

inline const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Where a value sits in the document, for messages: one frame per open object or array.
class JsonPath {
 public:
  void open(bool is_array) { frames_.push_back({is_array, 0, {}, {}}); }
  void close() {
    frames_.pop_back();
    element_done();
  }
  void element_done() {
    if (!frames_.empty() && frames_.back().is_array) ++frames_.back().index;
  }
  // false when the key is already in the current object
  bool key(const std::string& k, bool remember) {
    auto& f = frames_.back();
    f.key = k;
    return !remember || f.seen.insert(k).second;
  }
  // "a.b[3].c"; "" at the top level
  std::string str() const {
    std::string s;
    for (const auto& f : frames_) {
      if (f.is_array) {
        s += '[';  // (one piece at a time: GCC 12 warns falsely on "[" + to_string(...))
        s += std::to_string(f.index);
        s += ']';
      } else {
        if (!s.empty()) s += ".";
        s += clip(f.key, 40);
      }
    }
    return clip(s, 160);
  }
  // the object holding the current key
  std::string parent_str() const {
    JsonPath p = *this;
    p.frames_.back().key.clear();
    std::string s = p.str();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
  std::size_t depth() const { return frames_.size(); }

 private:
  struct Frame {
    bool is_array;
    std::size_t index;
    std::string key;
    std::unordered_set<std::string> seen;
  };
  std::vector<Frame> frames_;
};

inline std::string at_path(const std::string& path) { return path.empty() ? "" : " at '" + path + "'"; }

}  // namespace detail

// `text` parsed as JSON under `limits`; `where` (a quoted file name, "--config", ...) begins every message.
// Throws rlhf::io_error.
template <class Json = nlohmann::json>
Json parse_json_text(std::string_view text, std::string_view where, const JsonLimits& limits = {}) {
  using E = typename Json::parse_event_t;
  detail::JsonPath path;
  const auto on_event = [&](int, E event, Json& parsed) {
    switch (event) {
      case E::object_start:
      case E::array_start:
        if (int(path.depth()) >= limits.max_depth)
          fail<io_error>(where, ": JSON nests more than ", limits.max_depth, " levels deep",
                         detail::at_path(path.str()));
        path.open(event == E::array_start);
        break;
      case E::object_end:
      case E::array_end: path.close(); break;
      case E::key:
        if (!path.key(parsed.template get_ref<const std::string&>(), !limits.allow_duplicate_keys)) {
          const std::string in = path.parent_str();
          fail<io_error>(where, ": key '", detail::clip(parsed.template get_ref<const std::string&>(), 80),
                         "' appears more than once in ", in.empty() ? "the top-level object" : "the object at '" + in + "'");
        }
        break;
      case E::value: path.element_done(); break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), on_event);
  } catch (const typename Json::out_of_range& e) {
    if (e.id == 406)  // number overflow: the literal does not fit a double
      fail<io_error>(where, ": the number", detail::at_path(path.str()), " is beyond double's range");
    fail<io_error>(where, ": a value", detail::at_path(path.str()), " is out of range: ", detail::clip(e.what(), 160));
  } catch (const typename Json::parse_error& e) {
    fail<io_error>(where, ": not valid JSON at byte ", e.byte, detail::at_path(path.str()), ": ",
                   detail::clip(e.what(), 160));
  } catch (const typename Json::exception& e) {
    fail<io_error>(where, ": cannot be read as JSON", detail::at_path(path.str()), ": ", detail::clip(e.what(), 160));
  }
}

// The bytes of the regular file `path`, at most max_bytes of them. Throws rlhf::io_error naming the file.
inline std::string read_regular_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const std::string& p = path.native();
  const std::string shown = detail::quoted_path(path);
  if (p.empty()) fail<io_error>("an empty path names no file");
  if (p.find('\0') != std::string::npos) fail<io_error>(shown, ": the path contains a NUL byte");
  struct stat sb {};
  if (::stat(p.c_str(), &sb) != 0) fail<io_error>(shown, ": cannot read: ", std::strerror(errno));
  if (!S_ISREG(sb.st_mode)) fail<io_error>(shown, ": is ", detail::file_kind(sb.st_mode), ", not a regular file");
  const auto too_big = [&](auto size) {
    fail<io_error>(shown, ": is ", size, " bytes, more than the limit of ", max_bytes, " for this file");
  };
  if (std::uintmax_t(sb.st_size) > max_bytes) too_big(sb.st_size);

  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) fail<io_error>(shown, ": cannot open: ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::fstat(fd, &sb) != 0) fail<io_error>(shown, ": cannot stat: ", std::strerror(errno));
  if (!S_ISREG(sb.st_mode))  // replaced between stat and open
    fail<io_error>(shown, ": is ", detail::file_kind(sb.st_mode), ", not a regular file");

  std::string bytes;
  bytes.resize(std::min<std::uintmax_t>(std::uintmax_t(sb.st_size), max_bytes) + 1);
  std::size_t got = 0;
  for (;;) {
    if (got == bytes.size()) {
      if (got > max_bytes) too_big("more than " + std::to_string(max_bytes));
      bytes.resize(std::min(bytes.size() * 2, max_bytes + 1));
    }
    const ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail<io_error>(shown, ": read failed: ", std::strerror(errno));
    if (r == 0) break;
    got += std::size_t(r);
  }
  if (got > max_bytes) too_big("more than " + std::to_string(max_bytes));
  bytes.resize(got);
  return bytes;
}

// The JSON document in the regular file `path` (see the top of this file). Throws rlhf::io_error naming `path`.
template <class Json = nlohmann::json>
Json read_json_file(const std::filesystem::path& path, const JsonLimits& limits = {}) {
  const std::string text = read_regular_file(path, limits.max_bytes);
  return parse_json_text<Json>(text, detail::quoted_path(path), limits);
}

}  // namespace rlhf::io
