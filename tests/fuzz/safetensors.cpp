// libFuzzer target: rlhf::io::Safetensors::load on arbitrary bytes, then every accessor on what it accepted.
#include <vector>

#include "fuzz_support.hpp"
#include "rlhf/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = fuzz::input_file().write(data, size);
  return fuzz::refuse_or_accept([&] {
    const auto st = rlhf::io::Safetensors::load(path);
    std::vector<float> out;
    for (const auto& [key, value] : st.metadata()) (void)(key.size() + value.size());
    for (const auto& t : st.tensors()) {
      const auto bytes = st.bytes(t.name);
      volatile unsigned char sink = 0;
      for (const std::byte b : bytes) sink = sink ^ static_cast<unsigned char>(b);
      if (t.numel() > (std::size_t(1) << 20)) continue;
      out.assign(t.numel(), 0.0f);
      try {
        st.read_f32(t.name, std::span<const std::size_t>(t.shape), out);
      } catch (const rlhf::error&) {  // dtypes that are not read as float32: refused per tensor
      }
    }
  });
}
