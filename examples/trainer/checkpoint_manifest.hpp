#pragma once
// checkpoint-<step>/manifest.json: every file of the checkpoint with its size and a 64-bit content hash, written
// last (atomically) into the partial folder, and verified before a resume reads anything:
//
//   {"format": "rlhf-train checkpoint manifest", "version": 1,
//    "files": {"config.json": {"bytes": 412, "hash64": "9c1d..."}, "value_model/model.safetensors": {...}, ...}}
//
// The hash (Hash64 below) catches a flipped bit, a truncated or swapped file and an edit; it is not
// cryptographic, so it does not stop someone who means to forge a checkpoint. file_fingerprint() is the same hash
// of a data file, so that a resume can tell that train_file's contents, not just its row count, are the same.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/json_file.hpp"

namespace trainer {

namespace fs = std::filesystem;

// A streaming 64-bit hash: four multiply-rotate lanes over 32-byte stripes (the round and the constants of
// xxHash64), then the tail and a final avalanche of our own, so its values are not xxHash64's. Little-endian
// words on every host, so a checkpoint verifies on any machine.
class Hash64 {
 public:
  void update(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    total_ += n;
    if (buffered_) {
      const std::size_t take = std::min(n, sizeof buffer_ - buffered_);
      std::memcpy(buffer_ + buffered_, p, take);
      buffered_ += take, p += take, n -= take;
      if (buffered_ < sizeof buffer_) return;
      stripe(buffer_);
      buffered_ = 0;
    }
    for (; n >= sizeof buffer_; p += sizeof buffer_, n -= sizeof buffer_) stripe(p);
    std::memcpy(buffer_, p, n);
    buffered_ = n;
  }

  std::uint64_t digest() const {
    std::uint64_t h = std::rotl(lane_[0], 1) + std::rotl(lane_[1], 7) + std::rotl(lane_[2], 12) + std::rotl(lane_[3], 18);
    h ^= total_ * k2;
    std::size_t i = 0;
    for (; i + 8 <= buffered_; i += 8) h = std::rotl(h ^ round(0, word(buffer_ + i)), 27) * k1 + k4;
    for (; i < buffered_; ++i) h = std::rotl(h ^ (buffer_[i] * k5), 11) * k1;
    h ^= h >> 33, h *= k2, h ^= h >> 29, h *= k3, h ^= h >> 32;
    return h;
  }

  std::string hex() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s(16, '0');
    const std::uint64_t h = digest();
    for (int i = 0; i < 16; ++i) s[std::size_t(i)] = digits[(h >> (60 - 4 * i)) & 0xf];
    return s;
  }

 private:
  static constexpr std::uint64_t k1 = 0x9E3779B185EBCA87ull, k2 = 0xC2B2AE3D27D4EB4Full, k3 = 0x165667B19E3779F9ull,
                                 k4 = 0x85EBCA77C2B2AE63ull, k5 = 0x27D4EB2F165667C5ull;
  static std::uint64_t word(const unsigned char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    return w;
  }
  static std::uint64_t round(std::uint64_t acc, std::uint64_t w) { return std::rotl(acc + w * k2, 31) * k1; }
  void stripe(const unsigned char* p) {
    for (int l = 0; l < 4; ++l) lane_[l] = round(lane_[l], word(p + 8 * l));
  }

  std::uint64_t lane_[4] = {k1 + k2, k2, 0, 0 - k1};
  unsigned char buffer_[32] = {};
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;
};

struct FileDigest {
  std::uint64_t bytes = 0;
  std::string hash64;  // 16 hex digits
};

// The size and hash of the regular file `path`. Throws rlhf::io_error naming it.
inline FileDigest digest_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) rlhf::fail<rlhf::io_error>("cannot read '", path.string(), "': ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat sb {};
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
    rlhf::fail<rlhf::io_error>("'", path.string(), "' is not a regular file");
  Hash64 h;
  FileDigest d;
  std::vector<char> buffer(std::size_t(1) << 20);
  for (;;) {
    const ssize_t r = ::read(fd, buffer.data(), buffer.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) rlhf::fail<rlhf::io_error>("cannot read '", path.string(), "': ", std::strerror(errno));
    if (r == 0) break;
    h.update(buffer.data(), std::size_t(r));
    d.bytes += std::uint64_t(r);
  }
  d.hash64 = h.hex();
  return d;
}

// "hash64:<16 hex digits>:<bytes> bytes" of a data file, stored by a checkpoint and compared on resume.
inline std::string file_fingerprint(const fs::path& path) {
  const FileDigest d = digest_file(path);
  return "hash64:" + d.hash64 + ":" + std::to_string(d.bytes) + " bytes";
}

inline constexpr const char* manifest_name = "manifest.json";

namespace detail {

// Every file under `folder` but the manifest, by '/'-separated relative path. Refuses anything but files and
// folders (a link could point outside the checkpoint).
inline std::vector<std::string> checkpoint_files(const fs::path& folder) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(folder)) {
    const auto status = e.symlink_status();
    if (fs::is_directory(status)) continue;
    const std::string rel = e.path().lexically_relative(folder).generic_string();
    if (!fs::is_regular_file(status))
      rlhf::fail<rlhf::io_error>("checkpoint '", folder.string(), "': '", rel, "' is not a regular file");
    if (rel != manifest_name) out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace detail

// Writes folder/manifest.json for the files now in `folder` (call it last, when the folder is complete).
inline void write_manifest(const fs::path& folder) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& rel : detail::checkpoint_files(folder)) {
    const FileDigest d = digest_file(folder / rel);
    files[rel] = {{"bytes", d.bytes}, {"hash64", d.hash64}};
  }
  const nlohmann::json doc = {{"format", "rlhf-train checkpoint manifest"}, {"version", 1}, {"files", files}};
  rlhf::io::write_file_atomic(folder / manifest_name, doc.dump(2) + "\n");
}

// Checks every file of the checkpoint `folder` against its manifest. Throws rlhf::io_error naming the folder and
// the first file that is missing, of another size, changed, or not listed; or saying that there is no manifest.
inline void verify_manifest(const fs::path& folder) {
  const std::string where = "checkpoint '" + folder.string() + "'";
  const fs::path file = folder / manifest_name;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(file, ec)))
    rlhf::fail<rlhf::io_error>(where, " has no ", manifest_name, ": it was written before checkpoints had manifests "
                               "(or is incomplete), so its files cannot be verified; resume from a newer checkpoint");
  const auto doc = rlhf::io::read_json_file(file, {.max_bytes = std::size_t(16) << 20, .max_depth = 4});
  const auto bad = [&](const auto&... why) { rlhf::fail<rlhf::io_error>(where, ": ", manifest_name, " ", why...); };
  if (!doc.is_object() || doc.value("format", "") != "rlhf-train checkpoint manifest")
    bad("is not an rlhf-train checkpoint manifest");
  if (doc.value("version", 0) != 1) bad("has a version other than 1");
  const auto files = doc.find("files");
  if (files == doc.end() || !files->is_object()) bad("has no \"files\" object");

  std::map<std::string, FileDigest> listed;
  for (const auto& [rel, entry] : files->items()) {
    const fs::path p(rel);
    bool safe = !rel.empty() && p.is_relative() && rel != manifest_name;
    for (const auto& part : p) safe &= part != ".." && part != "." && !part.empty();
    if (!safe) bad("lists '", rlhf::io::detail::clip(rel), "', which is not a file inside the checkpoint");
    const auto bytes = entry.is_object() ? entry.find("bytes") : entry.end();
    const auto hash = entry.is_object() ? entry.find("hash64") : entry.end();
    if (bytes == entry.end() || !bytes->is_number_unsigned() || hash == entry.end() || !hash->is_string() ||
        hash->get_ref<const std::string&>().size() != 16)
      bad("has a malformed entry for '", rlhf::io::detail::clip(rel), "'");
    listed[rel] = {bytes->get<std::uint64_t>(), hash->get<std::string>()};
  }
  for (const auto& [rel, want] : listed) {
    const fs::path path = folder / rel;
    const auto status = fs::symlink_status(path, ec);
    if (!fs::exists(status)) rlhf::fail<rlhf::io_error>(where, ": '", rel, "' is missing");
    if (!fs::is_regular_file(status)) rlhf::fail<rlhf::io_error>(where, ": '", rel, "' is not a regular file");
    const FileDigest got = digest_file(path);
    if (got.bytes != want.bytes)
      rlhf::fail<rlhf::io_error>(where, ": '", rel, "' is ", got.bytes, " bytes but was written with ", want.bytes,
                                 " (truncated or replaced?)");
    if (got.hash64 != want.hash64)
      rlhf::fail<rlhf::io_error>(where, ": '", rel, "' has changed since it was written (hash64 ", got.hash64,
                                 ", manifest ", want.hash64, ")");
  }
  for (const auto& rel : detail::checkpoint_files(folder))
    if (!listed.count(rel))
      rlhf::fail<rlhf::io_error>(where, ": '", rel, "' is not in its manifest (added after the checkpoint was written)");
}

}  // namespace trainer
