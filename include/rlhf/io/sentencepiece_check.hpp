#pragma once
// Checks the character-normalisation tables of a serialised SentencePiece model before SentencePiece reads them.
//
// A model's normalizer_spec and denormalizer_spec (ModelProto fields 3 and 5) may carry a precompiled_charsmap
// (field 2 of each): a double-array trie (darts-clone layout) followed by the NUL-terminated replacement strings
// its leaves point into. SentencePiece loads the blob without checking where the trie's offsets and values lead,
// then walks it on every encode and decode, so a crafted table reads outside the model (a 143-byte model found by
// tests/fuzz/tokenizer.cpp crashes decode). This walks every node reachable from the root, for every input byte,
// and returns why the table is unsafe, or "" when every read SentencePiece can make stays inside it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf::io::detail {

// The parts of protobuf's wire format a ModelProto uses. Reads one field; false at the end or on malformed bytes.
struct ProtoField {
  std::uint32_t number = 0;
  std::uint32_t wire_type = 0;
  std::string_view bytes;  // wire type 2: the payload
};

inline bool read_varint(std::string_view& in, std::uint64_t& out) {
  out = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<std::uint8_t>(in.front());
    in.remove_prefix(1);
    out |= std::uint64_t(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

inline bool read_proto_field(std::string_view& in, ProtoField& field, bool& malformed) {
  malformed = false;
  if (in.empty()) return false;
  std::uint64_t tag = 0, value = 0;
  if (!read_varint(in, tag)) return malformed = true, false;
  field.number = static_cast<std::uint32_t>(tag >> 3);
  field.wire_type = static_cast<std::uint32_t>(tag & 7);
  field.bytes = {};
  switch (field.wire_type) {
    case 0:
      if (!read_varint(in, value)) return malformed = true, false;
      return true;
    case 1:
    case 5: {
      const std::size_t n = field.wire_type == 1 ? 8 : 4;
      if (in.size() < n) return malformed = true, false;
      in.remove_prefix(n);
      return true;
    }
    case 2:
      if (!read_varint(in, value) || value > in.size()) return malformed = true, false;
      field.bytes = in.substr(0, static_cast<std::size_t>(value));
      in.remove_prefix(static_cast<std::size_t>(value));
      return true;
    default:  // groups (3, 4) and undefined wire types: no SentencePiece model has them
      return malformed = true, false;
  }
}

// Why the precompiled_charsmap `blob` is unsafe to walk, or "" if it is safe (an empty blob means no table).
inline std::string charsmap_problem(std::string_view blob) {
  if (blob.empty()) return {};
  if (blob.size() <= 4) return "a precompiled_charsmap of " + std::to_string(blob.size()) + " bytes";
  std::uint32_t trie_bytes = 0;
  for (int i = 0; i < 4; ++i) trie_bytes |= std::uint32_t(static_cast<std::uint8_t>(blob[i])) << (8 * i);
  blob.remove_prefix(4);
  if (trie_bytes > blob.size())
    return "a precompiled_charsmap whose trie size (" + std::to_string(trie_bytes) + " bytes) exceeds the table";
  const std::string_view replacements = blob.substr(trie_bytes);
  const std::size_t n = trie_bytes / 4;  // [n] units
  if (n == 0) return "a precompiled_charsmap with an empty trie";
  const auto unit = [&](std::size_t i) {
    std::uint32_t u = 0;
    for (int k = 0; k < 4; ++k) u |= std::uint32_t(static_cast<std::uint8_t>(blob[4 * i + k])) << (8 * k);
    return u;
  };
  // darts-clone's unit fields
  const auto offset = [](std::uint32_t u) -> std::size_t { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  const auto label = [](std::uint32_t u) { return u & ((1u << 31) | 0xffu); };
  const auto has_leaf = [](std::uint32_t u) { return ((u >> 8) & 1) != 0; };
  const auto value = [](std::uint32_t u) { return u & ((1u << 31) - 1); };

  // A node's children sit at base ^ c for every byte c, read before their label is compared: the whole block of
  // 256 units around base must be inside the trie.
  std::vector<std::size_t> stack{offset(unit(0))};
  std::vector<bool> seen(n, false);
  while (!stack.empty()) {
    const std::size_t base = stack.back();
    stack.pop_back();
    if ((base | 0xffu) >= n) return "a precompiled_charsmap trie node points outside the trie";
    if (seen[base]) continue;
    seen[base] = true;
    for (std::uint32_t c = 0; c < 256; ++c) {
      const std::size_t child = base ^ c;
      const std::uint32_t u = unit(child);
      if (label(u) != c) continue;
      const std::size_t next = child ^ offset(u);
      if (next >= n) return "a precompiled_charsmap trie node points outside the trie";
      if (has_leaf(u)) {
        const std::size_t at = value(unit(next));
        if (at >= replacements.size() || replacements.find('\0', at) == std::string_view::npos)
          return "a precompiled_charsmap replacement outside its string table";
      }
      stack.push_back(next);
    }
  }
  return {};
}

// Why the serialised ModelProto `model` has an unsafe normalisation table, or "" (also when it is not a
// well-formed message: SentencePiece's own parser reports that).
inline std::string sentencepiece_normalizer_problem(std::string_view model) {
  ProtoField field;
  bool malformed = false;
  while (read_proto_field(model, field, malformed)) {
    if ((field.number != 3 && field.number != 5) || field.wire_type != 2) continue;
    const char* spec = field.number == 3 ? "normalizer_spec" : "denormalizer_spec";
    std::string_view inner = field.bytes;
    ProtoField f;
    bool bad = false;
    while (read_proto_field(inner, f, bad))
      if (f.number == 2 && f.wire_type == 2)
        if (auto why = charsmap_problem(f.bytes); !why.empty()) return std::string(spec) + ": " + why;
    if (bad) return std::string(spec) + " is not a well-formed message";
  }
  return {};
}

}  // namespace rlhf::io::detail
