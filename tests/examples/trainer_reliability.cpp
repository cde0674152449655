// rlhf-train's reliability pieces (issue 32), each on its own: the hardened JSON reader and the checked numbers
// (io/json_file.hpp, io/checked_number.hpp), the model folder's refusals, the output_dir lock and the handling of a
// folder that already holds a run, checkpoint manifests and data fingerprints, and the durable metrics log.
// Hostile inputs are built here (a FIFO, a million '[', ...), never committed.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../../examples/trainer/checkpoint_folders.hpp"
#include "../../examples/trainer/checkpoint_manifest.hpp"
#include "../../examples/trainer/metrics_log.hpp"
#include "../../examples/trainer/model_folder.hpp"
#include "../../examples/trainer/output_dir.hpp"
#include "../../examples/trainer/output_lock.hpp"
#include "rlhf/io/checked_number.hpp"
#include "rlhf/io/json_file.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using rlhf::test::TempDir;

namespace {

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The message of what `f` throws (as rlhf::error), checked to be one short line.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const rlhf::error& e) {
    const std::string msg = e.what();
    CHECK_MESSAGE(msg.find('\n') == std::string::npos, msg);
    CHECK_MESSAGE(msg.size() < 700, msg.size());
    return msg;
  }
  FAIL("nothing was thrown");
  return {};
}

std::string read_error(const fs::path& p, rlhf::io::JsonLimits limits = {}) {
  return error_of([&] { (void)rlhf::io::read_json_file(p, limits); });
}

void flip_byte(const fs::path& p, std::size_t at) {
  std::string bytes = slurp(p);
  REQUIRE(at < bytes.size());
  bytes[at] = char(bytes[at] ^ 0x01);
  write(p, bytes);
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("read_json_file refuses what is not a small regular file, by name, without blocking") {
  TempDir dir("rlhf-json");
  const fs::path fifo = dir / "config.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(has(read_error(fifo), "FIFO"));
  CHECK(has(read_error(fifo), "config.fifo"));
  CHECK(has(read_error(dir.path), "is a directory"));
  CHECK(has(read_error("/dev/zero"), "character device"));
  CHECK(has(read_error(dir / "absent.json"), "absent.json"));

  write(dir / "big.json", "[" + std::string(2000, ' ') + "]");
  CHECK(has(read_error(dir / "big.json", {.max_bytes = 1000}), "more than the limit of 1000"));
  CHECK(rlhf::io::read_json_file(dir / "big.json", {.max_bytes = 5000}).is_array());

  const std::string with_nul("a.json\0b", 8);
  CHECK(has(read_error(fs::path(with_nul)), "NUL"));
}

TEST_CASE("read_json_file stops a million-deep nesting while parsing, with a short message") {
  TempDir dir("rlhf-json");
  write(dir / "deep.json", std::string(1'000'000, '['));
  const std::string msg = read_error(dir / "deep.json");
  CHECK_MESSAGE(has(msg, "nests more than 64 levels"), msg);
  CHECK(has(msg, "deep.json"));

  std::string objects;
  for (int i = 0; i < 200'000; ++i) objects += "{\"n_inner\":";
  write(dir / "config.json", objects);
  CHECK(has(read_error(dir / "config.json"), "n_inner.n_inner"));

  write(dir / "ok.json", std::string(64, '[') + std::string(64, ']'));
  CHECK(rlhf::io::read_json_file(dir / "ok.json").is_array());
  write(dir / "over.json", std::string(65, '[') + std::string(65, ']'));
  CHECK(has(read_error(dir / "over.json"), "more than 64"));
}

TEST_CASE("read_json_file names a duplicate key, a number beyond double and a syntax error with its key path") {
  TempDir dir("rlhf-json");
  write(dir / "dup.json", R"({"a": 1, "b": {"c": 1, "c": 2}})");
  CHECK(has(read_error(dir / "dup.json"), "key 'c' appears more than once in the object at 'b'"));
  write(dir / "dup_top.json", R"({"beta": 0.1, "beta": 0.2})");
  CHECK(has(read_error(dir / "dup_top.json"), "key 'beta' appears more than once in the top-level object"));
  CHECK(rlhf::io::read_json_file(dir / "dup_top.json", {.allow_duplicate_keys = true})["beta"] == 0.2);

  write(dir / "huge.json", R"({"optim": {"learning_rate": 1e999}})");
  const std::string huge = read_error(dir / "huge.json");
  CHECK_MESSAGE(has(huge, "the number at 'optim.learning_rate' is beyond double's range"), huge);
  CHECK(has(huge, "huge.json"));
  write(dir / "in_array.json", R"({"xs": [1, 2, -1e999]})");
  CHECK(has(read_error(dir / "in_array.json"), "at 'xs[2]'"));

  write(dir / "bad.json", R"({"a": [1, 2,, 3]})");
  const std::string bad = read_error(dir / "bad.json");
  CHECK_MESSAGE(has(bad, "not valid JSON at byte"), bad);
  CHECK(has(bad, "'a[2]'"));
  // a long token in the parser's message is clipped
  write(dir / "long.json", "[\"" + std::string(100'000, 'x'));
  CHECK(read_error(dir / "long.json").size() < 700);

  CHECK(has(error_of([] { (void)rlhf::io::parse_json_text("1e999", "--learning_rate"); }),
            "--learning_rate: the number is beyond double's range"));
}

TEST_CASE("checked_number refuses a value that changes in the type it is stored in") {
  using rlhf::io::checked_number;
  using rlhf::io::parse_number;
  const nlohmann::json big = 1e308, b2 = 0.999999999, tiny = 1e-50;
  CHECK(checked_number<double>(big, "cfg", "margin") == 1e308);
  CHECK(has(error_of([&] { (void)checked_number<float>(big, "cfg", "margin"); }), "margin = 1e+308 is beyond float32's range"));
  CHECK(checked_number<double>(b2, "cfg", "adam_beta2", {.lo = 0, .hi = 1, .hi_open = true}) < 1);
  const std::string rounded = error_of([&] { (void)checked_number<float>(b2, "cfg", "adam_beta2", {.lo = 0, .hi = 1, .hi_open = true}); });
  CHECK_MESSAGE(has(rounded, "adam_beta2 = 0.999999999 becomes 1 as a float32, which is outside [0, 1)"), rounded);
  CHECK(has(error_of([&] { (void)checked_number<float>(tiny, "cfg", "learning_rate"); }), "stored as 0"));
  CHECK(has(error_of([] { (void)checked_number<float>(nlohmann::json("0.1"), "cfg", "beta"); }), "must be a number"));

  CHECK(checked_number<std::size_t>(nlohmann::json(18446744073709551615ull), "cfg", "seed") == 18446744073709551615ull);
  CHECK(has(error_of([] { (void)checked_number<int>(nlohmann::json(3.5), "cfg", "max_steps"); }), "is not an integer"));
  CHECK(has(error_of([] { (void)checked_number<unsigned>(nlohmann::json(-1), "cfg", "max_steps"); }), "does not fit uint32"));
  CHECK(has(error_of([] { (void)checked_number<int>(nlohmann::json(1e12), "cfg", "max_steps"); }), "does not fit int32"));
  CHECK(checked_number<int>(nlohmann::json(1e3), "cfg", "max_steps") == 1000);

  CHECK(parse_number<double>("3e-4", "command line", "learning_rate", {0, 10}) == 3e-4);
  CHECK(has(error_of([] { (void)parse_number<double>("1e999", "command line", "learning_rate"); }),
            "learning_rate = '1e999' is beyond float64's range"));
  CHECK(has(error_of([] { (void)parse_number<double>("nan", "command line", "beta"); }), "not a finite number"));
  CHECK(has(error_of([] { (void)parse_number<double>("0.1x", "command line", "beta"); }), "is not a number"));
  CHECK(has(error_of([] { (void)parse_number<double>("11", "command line", "learning_rate", {0, 10}); }), "outside [0, 10]"));
  CHECK(has(error_of([] { (void)parse_number<std::uint32_t>("99999999999", "command line", "max_steps"); }), "does not fit"));
  CHECK(parse_number<std::uint64_t>("42", "command line", "seed") == 42);
}

TEST_CASE("a model folder's unknown tensor, metadata that disagrees with config.json and hostile config.json are refused") {
  TempDir dir("rlhf-model");
  const rlhf::GptConfig small{.vocab_size = 16, .max_seq_len = 8, .channels = 8, .layers = 2, .heads = 2};
  const fs::path folder = dir / "model";
  trainer::save_model_folder(trainer::GptModel(small, 1), trainer::TextCodec{}, folder);
  CHECK(trainer::load_model_folder(folder, false, 1).config() == small);

  // metadata n_layer 3 on the 2-layer file
  {
    const auto st = rlhf::io::Safetensors::load(folder / "model.safetensors");
    std::vector<rlhf::io::TensorView> views;
    std::vector<std::vector<float>> data;
    for (const auto& t : st.tensors()) {
      data.emplace_back(t.numel());
      st.read_f32(t.name, t.shape, data.back());
    }
    for (std::size_t i = 0; i < st.tensors().size(); ++i)
      views.push_back({st.tensors()[i].name, rlhf::io::Dtype::f32, st.tensors()[i].shape, data[i].data()});
    auto meta = st.metadata();
    meta["n_layer"] = "3";
    const fs::path bad_meta = dir / "bad_meta";
    fs::create_directories(bad_meta);
    fs::copy_file(folder / "config.json", bad_meta / "config.json");
    rlhf::io::save_safetensors(bad_meta / "model.safetensors", views, meta);
    const std::string msg = error_of([&] { (void)trainer::load_model_folder(bad_meta, false, 1); });
    CHECK_MESSAGE(has(msg, "metadata n_layer = '3'"), msg);
    CHECK(has(msg, "config.json"));

    const std::vector<float> extra(4, 0.5f);
    views.push_back({"h.0.attn.secret", rlhf::io::Dtype::f32, {4}, extra.data()});
    const fs::path unknown = dir / "unknown";
    fs::create_directories(unknown);
    fs::copy_file(folder / "config.json", unknown / "config.json");
    rlhf::io::save_safetensors(unknown / "model.safetensors", views, st.metadata());
    CHECK(has(error_of([&] { (void)trainer::load_model_folder(unknown, false, 1); }), "tensor 'h.0.attn.secret'"));
  }

  const fs::path hostile = dir / "hostile";
  fs::create_directories(hostile);
  fs::copy_file(folder / "model.safetensors", hostile / "model.safetensors");
  write(hostile / "config.json", R"({"model_type": "gpt2", "vocab_size": 16, "n_positions": 8, "n_embd": 8,
                                    "n_layer": 2, "n_head": 2, "layer_norm_epsilon": 1e999})");
  CHECK(has(error_of([&] { (void)trainer::load_model_folder(hostile, false, 1); }), "'layer_norm_epsilon' is beyond double's range"));
  write(hostile / "config.json", std::string(300'000, '[') );
  CHECK(has(error_of([&] { (void)trainer::load_model_folder(hostile, false, 1); }), "nests more than"));
  fs::remove(hostile / "config.json");
  REQUIRE(::mkfifo((hostile / "config.json").c_str(), 0600) == 0);
  CHECK(has(error_of([&] { (void)trainer::load_model_folder(hostile, false, 1); }), "FIFO"));
}

TEST_CASE("a second lock on one output_dir is refused at once, naming the first holder") {
  TempDir dir("rlhf-lock");
  const fs::path out = dir / "run";
  {
    trainer::OutputDirLock first(out);
    CHECK(fs::is_directory(out));
    const std::string msg = error_of([&] { trainer::OutputDirLock second(out); });
    CHECK_MESSAGE(has(msg, "is in use by another rlhf-train run"), msg);
    CHECK(has(msg, "pid " + std::to_string(::getpid())));
  }
  trainer::OutputDirLock again(out);  // released with the first
  write(dir / "file", "x");
  CHECK(has(error_of([&] { trainer::OutputDirLock on_file(dir / "file"); }), "is not a folder"));
}

TEST_CASE("a fresh run into a folder holding a run: refused, or the old run moved aside whole") {
  TempDir dir("rlhf-outdir");
  const fs::path out = dir / "run";
  fs::create_directories(out / "checkpoint-5");
  write(out / "metrics.jsonl", "{\"step\": 1}\n");
  write(out / "checkpoint-5" / "model.safetensors", "weights");
  write(out / "notes.txt", "mine");
  trainer::OutputDirLock lock(out);
  CHECK(trainer::run_entries(out) == std::vector<std::string>{"checkpoint-5", "metrics.jsonl"});
  CHECK(has(error_of([&] { (void)trainer::prepare_fresh_output_dir(lock, false); }), "already holds a run (checkpoint-5, metrics.jsonl)"));
  const fs::path aside = trainer::prepare_fresh_output_dir(lock, true);
  CHECK(slurp(aside / "checkpoint-5" / "model.safetensors") == "weights");
  CHECK(slurp(aside / "notes.txt") == "mine");
  CHECK(trainer::run_entries(out).empty());
  CHECK(has(error_of([&] { trainer::OutputDirLock second(out); }), "in use"));  // the new folder is locked
  CHECK(trainer::prepare_fresh_output_dir(lock, false).empty());

  const fs::path model = dir / "model";
  fs::create_directories(model);
  CHECK(has(error_of([&] { trainer::refuse_output_over_input(dir / "model/", model, "model_name_or_path"); }),
            "is model_name_or_path"));
  trainer::refuse_output_over_input(out, model, "model_name_or_path");
}

TEST_CASE("remove_strays clears what a killed run left, and restores a checkpoint caught mid-replacement") {
  TempDir dir("rlhf-strays");
  trainer::OutputDirLock lock(dir.path);
  write(dir / "metrics.csv.tmp-0123456789abcdef", "half");
  fs::create_directories(dir / ".checkpoint-3.partial-77-abc");
  fs::create_directories(dir / ".checkpoint-4.partial");
  fs::create_directories(dir / ".checkpoint-6.previous");
  write(dir / ".checkpoint-6.previous" / "x", "old");
  fs::create_directories(dir / "checkpoint-2");
  fs::create_directories(dir / ".checkpoint-2.previous");
  const auto notes = trainer::remove_strays(lock);
  CHECK(notes.size() == 5);
  CHECK(!fs::exists(dir / "metrics.csv.tmp-0123456789abcdef"));
  CHECK(!fs::exists(dir / ".checkpoint-3.partial-77-abc"));
  CHECK(!fs::exists(dir / ".checkpoint-4.partial"));
  CHECK(slurp(dir / "checkpoint-6" / "x") == "old");
  CHECK(!fs::exists(dir / ".checkpoint-2.previous"));
  CHECK(fs::exists(dir / "checkpoint-2"));
  CHECK(fs::exists(lock.lock_file()));
}

TEST_CASE("a checkpoint's manifest catches a flipped byte in any file, a truncated, missing or added file") {
  TempDir dir("rlhf-manifest");
  const auto fill = [](const fs::path& f) {
    write(f / "model.safetensors", std::string(1000, 'w'));
    write(f / "optimizer.safetensors", std::string(77, 'o'));
    write(f / "trainer_state.json", R"({"global_step": 5})");
    fs::create_directories(f / "value_model");
    write(f / "value_model" / "config.json", "{}");
  };
  const fs::path ckpt = trainer::write_checkpoint(dir.path, 5, fill);
  CHECK(ckpt == dir / "checkpoint-5");
  CHECK(fs::exists(ckpt / "manifest.json"));
  trainer::verify_manifest(ckpt);
  for (const char* name : {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "value_model/config.json"}) {
    const std::size_t size = fs::file_size(ckpt / name);
    for (std::size_t at : {std::size_t(0), size / 2, size - 1}) {
      flip_byte(ckpt / name, at);
      const std::string msg = error_of([&] { trainer::verify_manifest(ckpt); });
      CHECK_MESSAGE(has(msg, std::string("'") + name + "' has changed"), msg);
      flip_byte(ckpt / name, at);
    }
  }
  trainer::verify_manifest(ckpt);

  const std::string whole = slurp(ckpt / "optimizer.safetensors");
  write(ckpt / "optimizer.safetensors", whole.substr(0, 40));
  CHECK(has(error_of([&] { trainer::verify_manifest(ckpt); }), "'optimizer.safetensors' is 40 bytes but was written with 77"));
  write(ckpt / "optimizer.safetensors", whole);
  fs::remove(ckpt / "trainer_state.json");
  CHECK(has(error_of([&] { trainer::verify_manifest(ckpt); }), "'trainer_state.json' is missing"));
  write(ckpt / "trainer_state.json", R"({"global_step": 5})");
  trainer::verify_manifest(ckpt);
  write(ckpt / "rng_state.safetensors", "new");
  CHECK(has(error_of([&] { trainer::verify_manifest(ckpt); }), "'rng_state.safetensors' is not in its manifest"));
  fs::remove(ckpt / "rng_state.safetensors");

  // the manifest itself edited to match a changed file would need the hash; an edited manifest is still JSON-checked
  const std::string manifest = slurp(ckpt / "manifest.json");
  write(ckpt / "manifest.json", manifest.substr(0, manifest.size() / 2));
  CHECK(has(error_of([&] { trainer::verify_manifest(ckpt); }), "not valid JSON"));
  fs::remove(ckpt / "manifest.json");
  CHECK(has(error_of([&] { trainer::verify_manifest(ckpt); }), "written before checkpoints had manifests"));

  // a failing fill leaves nothing named checkpoint-* or .checkpoint-*
  CHECK_THROWS(trainer::write_checkpoint(dir.path, 6, [](const fs::path&) { throw rlhf::io_error("disk full"); }));
  for (const auto& e : fs::directory_iterator(dir.path)) CHECK(e.path().filename() != "checkpoint-6");
  CHECK(trainer::run_entries(dir.path) == std::vector<std::string>{"checkpoint-5"});
}

TEST_CASE("file_fingerprint tells two data files of one length apart") {
  TempDir dir("rlhf-fingerprint");
  write(dir / "a.jsonl", "{\"prompt\": \"a\"}\n");
  write(dir / "b.jsonl", "{\"prompt\": \"b\"}\n");
  write(dir / "a2.jsonl", "{\"prompt\": \"a\"}\n");
  CHECK(trainer::file_fingerprint(dir / "a.jsonl") == trainer::file_fingerprint(dir / "a2.jsonl"));
  CHECK(trainer::file_fingerprint(dir / "a.jsonl") != trainer::file_fingerprint(dir / "b.jsonl"));
  CHECK(has(trainer::file_fingerprint(dir / "a.jsonl"), ":16 bytes"));
  // the streaming hash does not depend on how the bytes are split
  std::string bytes(1000, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 7 + 3);
  trainer::Hash64 whole, pieces;
  whole.update(bytes.data(), bytes.size());
  for (std::size_t i = 0; i < bytes.size(); i += 13) pieces.update(bytes.data() + i, std::min<std::size_t>(13, bytes.size() - i));
  CHECK(whole.hex() == pieces.hex());
  CHECK(trainer::Hash64{}.hex() != whole.hex());
}

TEST_CASE("the metrics log keeps every intact record around a torn middle line and a torn last line") {
  TempDir dir("rlhf-metrics");
  {
    trainer::MetricsLog log(dir.path, -1);
    for (int step = 1; step <= 6; ++step) log.append({{"step", double(step)}, {"loss", 1.0 / step}});
  }
  auto lines = lines_of(dir / "metrics.jsonl");
  REQUIRE(lines.size() == 6);
  std::string text;
  for (std::size_t i = 0; i < lines.size(); ++i)
    text += (i == 2 ? lines[i].substr(0, 7) + "\n" : i == 5 ? lines[i].substr(0, 9) : lines[i] + "\n");
  write(dir / "metrics.jsonl", text);  // line 3 torn in the middle, line 6 torn at the end

  trainer::MetricsLog resumed(dir.path, 5);
  const auto kept = lines_of(dir / "metrics.jsonl");
  CHECK(kept == std::vector<std::string>{lines[0], lines[1], lines[3], lines[4]});
  REQUIRE(resumed.repairs().size() == 2);
  CHECK(has(resumed.repairs()[0], "line 3"));
  CHECK(has(resumed.repairs()[1], "line 6"));
  CHECK(has(resumed.repairs()[1], "cut short"));
  CHECK(lines_of(dir / "metrics.csv").size() == 5);  // header + 4

  trainer::MetricsLog earlier(dir.path, 2);  // records after the checkpoint's step go
  CHECK(lines_of(dir / "metrics.jsonl") == std::vector<std::string>{lines[0], lines[1]});
}

TEST_CASE("a failed metrics append (disk full) throws a named error and leaves no torn line") {
  TempDir dir("rlhf-metrics");
  trainer::MetricsLog log(dir.path, -1);
  log.append({{"step", 1}, {"loss", 0.5}});
  log.append({{"step", 2}, {"loss", 0.4}});
  ::setenv("RLHF_TRAIN_FAULT_WRITE_FAIL_AT", "2", 1);
  log.append({{"step", 3}, {"loss", 0.3}});
  const std::string msg = error_of([&] { log.append({{"step", 4}, {"loss", 0.2}}); });
  ::unsetenv("RLHF_TRAIN_FAULT_WRITE_FAIL_AT");
  CHECK_MESSAGE(has(msg, "cannot append the record of step 4"), msg);
  CHECK(has(msg, "metrics.jsonl"));
  CHECK(has(msg, std::strerror(ENOSPC)));
  const auto lines = lines_of(dir / "metrics.jsonl");
  REQUIRE(lines.size() == 3);
  CHECK(slurp(dir / "metrics.jsonl").back() == '\n');
  CHECK(lines_of(dir / "metrics.csv").size() == 4);
  log.append({{"step", 4}, {"loss", 0.2}});  // the disk has room again
  CHECK(lines_of(dir / "metrics.jsonl").size() == 4);
  CHECK(lines_of(dir / "metrics.csv").size() == 5);
  trainer::MetricsLog resumed(dir.path, 4);
  CHECK(resumed.repairs().empty());
}
