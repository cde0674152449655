#include "rlhf/algorithms/sequence.hpp"

#include <doctest/doctest.h>

#include "algorithms/bandit_fixture.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

TokenBatch ragged_batch() {  // 3 rows, T = 4, responses of lengths 2, 1, 3 padded on either side
  TokenBatch b = TokenBatch::zeros(3, 4);
  const int tokens[] = {5, 6, 7, 0, 0, 0, 8, 9, 1, 2, 3, 4};
  const int mask[] = {0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1};
  for (int i = 0; i < 12; ++i) b.tokens[i] = tokens[i], b.response_mask[i] = static_cast<std::uint8_t>(mask[i]);
  return b;
}

}  // namespace

TEST_CASE("sequence: mask_matrix, response_lengths and sequence_sums") {
  const auto batch = ragged_batch();
  const mat mask = mask_matrix<eigen<double>>(batch);
  REQUIRE(mask.rows() == 3);
  REQUIRE(mask.cols() == 4);
  for (std::size_t i = 0; i < 12; ++i) CHECK(mask.data()[i] == batch.response_mask[i]);
  const vec lengths = response_lengths<eigen<double>>(batch);
  CHECK(lengths[0] == 2);
  CHECK(lengths[1] == 1);
  CHECK(lengths[2] == 3);
  const mat x = random_matrix(3, 4, -5, 0, 1);
  const vec sums = sequence_sums(x, mask);
  CHECK(sums[0] == doctest::Approx(x(0, 1) + x(0, 2)));
  CHECK(sums[1] == doctest::Approx(x(1, 3)));
  CHECK(sums[2] == doctest::Approx(x(2, 1) + x(2, 2) + x(2, 3)));
  CHECK_THROWS_AS(sequence_sums(x, mat(mat::Zero(2, 4))), shape_error);
}

TEST_CASE("sequence: spread_over_tokens is the adjoint of sequence_sums") {
  // <spread(d), g> = <d, sums(g)> for every d [B] and g [B, T].
  const mat mask = mask_matrix<eigen<double>>(ragged_batch());
  const vec d = random_vector(3, -1, 1, 2);
  const mat g = random_matrix(3, 4, -1, 1, 3);
  const mat spread = spread_over_tokens(d, mask);
  CHECK((spread.array() * g.array()).sum() == doctest::Approx(d.dot(sequence_sums(g, mask))));
  CHECK(spread(1, 0) == 0.0);
  CHECK(spread(1, 3) == d[1]);
  CHECK_THROWS_AS(spread_over_tokens(vec(vec::Zero(2)), mask), shape_error);
}

TEST_CASE("sequence: slices, gathers and concatenation keep rows intact") {
  const auto batch = ragged_batch();
  const auto middle = slice_rows(batch, 1, 3);
  CHECK(middle.batch == 2);
  CHECK(middle.token(0, 3) == 9);
  CHECK(middle.mask(1, 1) == 1);
  CHECK_THROWS_AS(slice_rows(batch, 2, 4), shape_error);

  const std::vector<std::size_t> order = {2, 0};
  const auto gathered = gather_rows(batch, order);
  CHECK(gathered.token(0, 0) == 1);
  CHECK(gathered.token(1, 2) == 7);
  const mat m = random_matrix(3, 4, 0, 1, 4);
  const mat gm = gather_rows(m, order);
  CHECK(gm.row(0) == m.row(2));
  CHECK(gm.row(1) == m.row(0));
  CHECK(slice_rows(m, 1, 2).row(0) == m.row(1));
  const vec v = random_vector(5, 0, 1, 5);
  CHECK(slice_elements(v, 1, 4) == v.segment(1, 3));
  CHECK_THROWS_AS(slice_elements(v, 3, 6), shape_error);

  // Concatenation pads the narrower batch on the right: its rows keep their positions.
  const auto narrow = toy::bandit_batch(std::vector<token_id>{1}, std::vector<token_id>{2});  // [1, 2]
  const auto joint = concat_rows(narrow, batch);
  CHECK(joint.batch == 4);
  CHECK(joint.time == 4);
  CHECK(joint.token(0, 0) == 1);
  CHECK(joint.token(0, 1) == 2);
  CHECK(joint.mask(0, 1) == 1);
  CHECK(joint.mask(0, 2) == 0);
  CHECK(joint.response_length(0) == 1);
  for (std::size_t b = 0; b < 3; ++b)
    for (std::size_t t = 0; t < 4; ++t) {
      CHECK(joint.token(b + 1, t) == batch.token(b, t));
      CHECK(joint.mask(b + 1, t) == batch.mask(b, t));
    }
}

TEST_CASE("sequence: sequence_logps scores in blocks as in one go") {
  toy::BanditPolicy<double> policy(2, 3, {0.1, -0.4, 0.9, 1.2, 0.0, -2.0});
  const std::vector<token_id> x = {0, 1, 1, 0, 1}, y = {2, 0, 2, 1, 1};
  const auto batch = toy::bandit_batch(x, y);
  const auto one = sequence_logps(policy, batch), blocks = sequence_logps(policy, batch, {.micro_batches = 3});
  const auto pi = policy.probabilities();
  REQUIRE(one.size() == 5);
  for (std::size_t b = 0; b < 5; ++b) {
    CHECK(one[b] == doctest::Approx(std::log(pi[x[b] * 3 + y[b]])));
    CHECK(blocks[b] == one[b]);
  }
  CHECK_THROWS_AS(sequence_logps(policy, batch, {.micro_batches = 6}), config_error);
}

TEST_CASE("sequence: attention masks travel with their rows") {
  TokenBatch left = TokenBatch::zeros(2, 3);  // left-padded: [pad, x, y] and [x, x, y]
  left.tokens = {0, 1, 2, 3, 4, 5};
  left.response_mask = {0, 0, 1, 0, 0, 1};
  left.attention_mask = {0, 1, 1, 1, 1, 1};
  const auto narrow = toy::bandit_batch(std::vector<token_id>{1}, std::vector<token_id>{2});  // no mask, T = 2
  const auto joint = concat_rows(narrow, left);
  REQUIRE(joint.attention_mask.size() == 9);
  const std::vector<std::uint8_t> want = {1, 1, 0, 0, 1, 1, 1, 1, 1};  // narrow's own tokens real, its pad not
  CHECK(joint.attention_mask == want);
  CHECK(concat_rows(narrow, narrow).attention_mask.empty());
  CHECK(slice_rows(left, 0, 1).attention_mask == std::vector<std::uint8_t>{0, 1, 1});
  const std::vector<std::size_t> order = {1, 0};
  CHECK(gather_rows(left, order).attention_mask == std::vector<std::uint8_t>{1, 1, 1, 0, 1, 1});
}
