// The strategy registry: names, options, the CLI listing, and the checks
// every registered strategy goes through with no test of its own. This file
// also registers a strategy of its own ("test-anchor"), which the generic
// suites (resume, corruption sweep, the manager's mid-experience resume) then
// run like the built-in ones.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "cli/commands.h"
#include "continua/checkpoint/checkpoint.h"
#include "continua/errors.h"
#include "continua/training/registry.h"
#include "continua/training/strategy.h"
#include "test_util.h"

namespace continua {
namespace {

// A plugin a user would write: pulls the parameters towards where they were
// after the previous experience, and counts the iterations it saw.
class AnchorPlugin : public Plugin {
 public:
  explicit AnchorPlugin(double lambda) : lambda_(lambda) {}
  std::string name() const override { return "anchor"; }
  void before_backward(Strategy& s) override {
    if (anchor_.empty()) return;
    at::Tensor penalty = at::zeros({}, s.loss.options());
    for (const auto& p : s.model().named_parameters()) {
      auto it = anchor_.find(p.key());
      if (it == anchor_.end() || it->second.sizes() != p.value().sizes()) continue;
      penalty = penalty + (p.value() - it->second).pow(2).sum();
    }
    s.loss = s.loss + lambda_ * penalty;
  }
  void after_training_iteration(Strategy&) override { ++iterations_; }
  void after_training_exp(Strategy& s) override {
    anchor_.clear();
    for (const auto& p : s.model().named_parameters()) anchor_[p.key()] = p.value().detach().clone();
  }
  void save_state(StateWriter& w) const override {
    w.write("iterations", iterations_);
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [k, t] : anchor_) {
      names.push_back(k);
      w.child("anchor").write(k, t);
    }
    w.write("names", names);
  }
  void load_state(const StateReader& r) override {
    iterations_ = r.get<int64_t>("iterations");
    std::map<std::string, at::Tensor> a;
    for (const auto& n : r.json("names")) a[n.get<std::string>()] = r.child("anchor").copy_out(n.get<std::string>());
    anchor_ = std::move(a);
  }
  int64_t iterations() const { return iterations_; }

 private:
  double lambda_;
  int64_t iterations_ = 0;
  std::map<std::string, at::Tensor> anchor_;
};

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "test-anchor", "A strategy registered by a test: an L2 pull towards the previous experience's weights",
    {StrategyOption::real("test-anchor-lambda", 0.05, "weight of the pull")},
    [](Strategy& s, const StrategyConfig& c) {
      s.add_plugin(std::make_shared<AnchorPlugin>(c.real("test-anchor-lambda")));
    }});

using testing::make_test_strategy;
using testing::synthetic_benchmark;
using testing::TempDir;

TEST(Registry, ListsTheBuiltinsAndTheTestsOwnStrategyWithTheirOptions) {
  const auto names = strategy_names();
  for (const char* n : {"naive", "replay", "ewc", "lwf", "cumulative", "test-anchor"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  const nlohmann::json replay = strategy_info("replay").to_json();
  std::map<std::string, nlohmann::json> opts;
  for (const auto& o : replay["options"]) opts[o["name"]] = o;
  EXPECT_EQ(opts.at("mem-size")["default"], 500);
  EXPECT_EQ(opts.at("replay-policy")["default"], "experience-balanced");
  EXPECT_EQ(opts.at("mem-mb-size")["type"], "int");
  EXPECT_TRUE(opts.at("mem-size")["fixed_at_resume"].get<bool>());
  EXPECT_FALSE(strategy_info("naive").description.empty());
}

TEST(Registry, TheCliListsEveryBuiltinStrategyAsJson) {
  auto r = testing::run_command(testing::continua_bin() + " strategies --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json all = nlohmann::json::parse(r.output);
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& s : all) by_name[s.at("name")] = s;
  for (const char* n : {"naive", "replay", "ewc", "lwf", "cumulative"}) ASSERT_TRUE(by_name.count(n)) << n;
  std::set<std::string> ewc;
  for (const auto& o : by_name["ewc"]["options"]) ewc.insert(o.at("name").get<std::string>());
  EXPECT_EQ(ewc, (std::set<std::string>{"ewc-lambda", "ewc-mode", "ewc-decay"}));
  std::set<std::string> lwf;
  for (const auto& o : by_name["lwf"]["options"]) lwf.insert(o.at("name").get<std::string>());
  EXPECT_EQ(lwf, (std::set<std::string>{"lwf-alpha", "lwf-temperature"}));
  // The test's own strategy lives in this binary only.
  EXPECT_FALSE(by_name.count("test-anchor"));
  // `continua run --help` groups the options by the strategies using them.
  auto help = testing::run_command(testing::continua_bin() + " run --help");
  EXPECT_NE(help.output.find("--ewc-lambda"), std::string::npos);
  EXPECT_NE(help.output.find("Options of replay"), std::string::npos) << help.output;
}

TEST(Registry, RefusesTwoNamesAndASharedOptionDeclaredDifferently) {
  auto noop = [](Strategy&, const StrategyConfig&) {};
  EXPECT_THROW(register_strategy(StrategyInfo{"naive", "again", {}, noop}), InvalidArgument);
  EXPECT_THROW(register_strategy(StrategyInfo{
                   "test-odd-memory", "", {StrategyOption::integer("mem-size", 7, "other default", true)}, noop}),
               InvalidArgument);
  EXPECT_FALSE(is_registered_strategy("test-odd-memory"));
}

TEST(Registry, WrongOptionValuesAreRefusedNamingTheOption) {
  auto expect_msg = [](const nlohmann::json& given, const std::string& what) {
    try {
      resolve_strategy_options("replay", given);
      ADD_FAILURE() << "accepted " << given.dump();
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_msg({{"mem-size", "lots"}}, "--mem-size");
  expect_msg({{"mem-size", 1.5}}, "--mem-size");
  expect_msg({{"replay-policy", "fifo"}}, "--replay-policy");
  const nlohmann::json v = resolve_strategy_options("replay", {{"mem_size", "42"}, {"ewc-lambda", 3}});
  EXPECT_EQ(v.at("mem-size"), 42);            // text and the config-key spelling parse
  EXPECT_FALSE(v.contains("ewc-lambda"));      // another strategy's option is not replay's
  EXPECT_EQ(v.at("replay-policy"), "experience-balanced");  // defaults filled in
  try {
    strategy_info("no-such-method");
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("test-anchor"), std::string::npos) << "the message lists the known names";
  }
}

// The test's own strategy through the CLI's code path (cli::run, in this
// process): two experiences, stop, resume from the checkpoint, and the state
// digest equals the uninterrupted run's.
TEST(Registry, AStrategyRegisteredInATestRunsAndResumesThroughTheCliPath) {
  TempDir d;
  auto options = [&](const std::string& out) {
    cli::RunOptions o;
    o.benchmark = "split-synthetic";
    o.strategy = "test-anchor";
    o.strategy_options["test-anchor-lambda"] = "0.2";
    o.hidden = 16;
    o.train_mb_size = 16;
    o.seed = 5;
    o.threads = 1;
    o.verbosity = "quiet";
    o.signals = "none";
    o.out = d.file(out);
    return o;
  };
  ASSERT_EQ(cli::run(options("whole")), 0);
  cli::RunOptions part = options("part");
  part.checkpoint = d.file("ckpt.safetensors");
  part.max_experiences = 2;
  ASSERT_EQ(cli::run(part), 0);
  part.max_experiences = -1;
  ASSERT_EQ(cli::run(part), 0);
  auto digest = [&](const std::string& out) {
    return nlohmann::json::parse(testing::read_file(d.file(out) + "/results.json"));
  };
  const auto whole = digest("whole"), resumed = digest("part");
  EXPECT_EQ(whole["state_digest"], resumed["state_digest"]);
  EXPECT_EQ(whole["config"]["test_anchor_lambda"], 0.2);
  EXPECT_TRUE(resumed["complete"].get<bool>());
  // The option matters: another lambda is another run.
  cli::RunOptions other = options("other");
  other.strategy_options["test-anchor-lambda"] = "0";
  ASSERT_EQ(cli::run(other), 0);
  EXPECT_NE(digest("other")["state_digest"], whole["state_digest"]);
}

// ---------------------------------------------------------------- every registered strategy

class EveryStrategy : public ::testing::TestWithParam<std::string> {};

void train_all(Strategy& s, const Benchmark& b, int64_t from, int64_t to) {
  for (int64_t i = from; i < to; ++i) {
    ASSERT_TRUE(s.train(b.train_stream()[size_t(i)]));
    s.eval(b.test_stream());
  }
}

// A checkpoint without the plugins' state resumes to another result: each
// strategy's own state is in the checkpoint and matters.
TEST_P(EveryStrategy, LeavingOutItsPluginsStateChangesTheResult) {
  auto b = synthetic_benchmark(21);
  auto ref = make_test_strategy(GetParam(), *b);
  if (ref->state_digest().empty() || ref->plugins().empty()) GTEST_SKIP() << "no plugin state";
  train_all(*ref, *b, 0, 4);
  TempDir d;
  for (bool exclude : {false, true}) {
    auto first = make_test_strategy(GetParam(), *b);
    train_all(*first, *b, 0, 2);
    save_checkpoint(*first, d.file("c.st"), SaveOptions().exclude(exclude ? std::vector<std::string>{"plugins"}
                                                                          : std::vector<std::string>{}));
    auto second = make_test_strategy(GetParam(), *b);
    auto [s, initial] = maybe_load_checkpoint(*second, d.file("c.st"), {}, {b});
    ASSERT_EQ(initial, 2);
    train_all(s, *b, 2, 4);
    if (exclude) {
      EXPECT_NE(s.state_digest(), ref->state_digest()) << "the plugins' state made no difference";
    } else {
      EXPECT_EQ(s.state_digest(), ref->state_digest());
    }
  }
}

// Memories are indices and stored tensors are sized by the model and the
// memory: the state's tensors take the same bytes on twice the data.
TEST_P(EveryStrategy, StateDoesNotGrowWithTheDataset) {
  std::vector<int64_t> bytes;
  for (int64_t per_experience : {150, 300}) {
    auto b = make_benchmark(BenchmarkOptions().name("split-synthetic").seed(3).subset(per_experience));
    auto s = make_test_strategy(GetParam(), *b);
    train_all(*s, *b, 0, 3);
    int64_t n = 0;
    const StateTree tree = strategy_state(*s);
    for (const auto& [key, value] : tree.entries()) {
      if (const auto* t = std::get_if<at::Tensor>(&value)) n += int64_t(t->nbytes());
    }
    bytes.push_back(n);
  }
  EXPECT_EQ(bytes[0], bytes[1]);
}

INSTANTIATE_TEST_SUITE_P(Registered, EveryStrategy, ::testing::ValuesIn(strategy_names()),
                         [](const auto& info) { return testing::test_name(info.param); });

}  // namespace
}  // namespace continua
