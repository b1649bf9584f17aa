// The standard methods of training/plugins/: each test checks the quantity
// the method's paper defines, computed independently here, and fails when
// the method's defining step is removed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <random>
#include <set>

#include "continua/training/parameter_map.h"
#include "continua/training/plugins.h"
#include "continua/training/qp.h"
#include "continua/training/strategy.h"
#include "test_util.h"

namespace continua {
namespace {

using testing::synthetic_benchmark;

std::unique_ptr<Strategy> small_strategy(const Benchmark& b, uint64_t seed = 1, double dropout = 0.0,
                                         int64_t mb = 16) {
  torch::manual_seed(seed);
  return std::make_unique<Strategy>(
      make_model(ModelOptions().input_size(b.input_size()).hidden(16).dropout(dropout)),
      StrategyOptions().train_mb_size(mb).eval_mb_size(64).seed(seed).optimizer(
          OptimizerOptions().lr(0.05).momentum(0.9)));
}

// Records, per iteration, each parameter's gradient and its value before
// and after the step (added before the plugin under test, it sees the
// gradient of the task's loss alone).
class StepProbe : public Plugin {
 public:
  std::string name() const override { return "step_probe"; }
  bool part_of_state() const override { return false; }
  void before_training_exp(Strategy& s) override {
    start = parameter_values(s.model());
    path = parameter_zeros(s.model());
  }
  void after_backward(Strategy& s) override {
    grad.clear();
    for (const auto& p : s.model().named_parameters()) grad[p.key()] = p.value().grad().clone();
    before = parameter_values(s.model());
  }
  void after_update(Strategy& s) override {
    for (const auto& p : s.model().named_parameters()) {
      path[p.key()] -= grad[p.key()] * (p.value().detach() - before[p.key()]);
    }
  }
  ParameterMap start, path, grad, before;
};

// Records the gradient right before the optimizer step (added after the
// plugin under test: what the optimizer will use).
class FinalGradProbe : public Plugin {
 public:
  std::string name() const override { return "final_grad_probe"; }
  bool part_of_state() const override { return false; }
  void after_backward(Strategy& s) override { last = flat_gradient(s.model()); }
  at::Tensor last;
};

TEST(SynapticIntelligence, ImportanceIsThePathIntegralOverTheStepsTaken) {
  auto b = synthetic_benchmark(1);
  auto s = small_strategy(*b);
  auto probe = std::make_shared<StepProbe>();
  s->add_plugin(probe);
  auto si = std::make_shared<SynapticIntelligencePlugin>(SynapticIntelligencePlugin::Options{0.5, 0.01});
  s->add_plugin(si);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  const ParameterMap end = parameter_values(s->model());
  ASSERT_FALSE(si->importance().empty());
  for (const auto& [name, omega] : probe->path) {
    // ω = −Σ g·Δθ is positive overall: training lowered the loss.
    const at::Tensor expected = omega / ((end.at(name) - probe->start.at(name)).pow(2) + 0.01);
    EXPECT_TRUE(at::allclose(si->importance().at(name), expected, 1e-4, 1e-7)) << name;
  }
  EXPECT_GT(probe->path.at("features.0.weight").sum().item<double>(), 0);
  // The next experience: the surrogate's gradient 2c Ω (θ − θ*) is added to
  // the task's gradient, and ω integrates the task's gradient alone.
  class Check : public Plugin {
   public:
    Check(SynapticIntelligencePlugin& si, StepProbe& probe, FinalGradProbe& final_grad)
        : si_(si), probe_(probe), final_(final_grad) {}
    std::string name() const override { return "check"; }
    bool part_of_state() const override { return false; }
    void after_backward(Strategy& s) override {
      std::vector<at::Tensor> expected;
      for (const auto& p : s.model().named_parameters()) {
        at::Tensor g = probe_.grad.at(p.key()).clone();
        const at::Tensor& ref = si_.reference().at(p.key());
        g.add_(2 * 0.5 * si_.importance().at(p.key()) * (p.value().detach() - ref));
        expected.push_back(g.flatten());
      }
      max_diff = std::max(max_diff, (at::cat(expected) - final_.last).abs().max().item<double>());
      ++checked;
    }
    SynapticIntelligencePlugin& si_;
    StepProbe& probe_;
    FinalGradProbe& final_;
    double max_diff = 0;
    int checked = 0;
  };
  ParameterMap importance;  // a copy: SI adds to its tensors in place
  for (const auto& [name, t] : si->importance()) importance[name] = t.clone();
  auto after = std::make_shared<FinalGradProbe>();  // after SI
  s->add_plugin(after);
  auto check = std::make_shared<Check>(*si, *probe, *after);
  s->add_plugin(check);
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  EXPECT_GT(check->checked, 0);
  EXPECT_LT(check->max_diff, 1e-6);
  EXPECT_GT(si->importance().at("classifier.head.weight").abs().sum().item<double>(), 0);
  // Ω grows by this experience's path integral over its own displacement.
  fit_to(importance, s->model());
  const ParameterMap end1 = parameter_values(s->model());
  for (const auto& [name, omega] : probe->path) {
    const at::Tensor expected =
        importance.at(name) + omega / ((end1.at(name) - probe->start.at(name)).pow(2) + 0.01);
    EXPECT_TRUE(at::allclose(si->importance().at(name), expected, 1e-4, 1e-6)) << name;
  }
}

TEST(MAS, ImportanceIsTheMeanGradientMagnitudeOfTheOutputNorm) {
  auto b = synthetic_benchmark(2);
  auto s = small_strategy(*b, 2, /*dropout=*/0.3);
  auto mas = std::make_shared<MASPlugin>(MASPlugin::Options{1.0, 0.5, false});
  s->add_plugin(mas);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  // Independently, on a copy of the model without dropout.
  auto copy = s->model().clone_model();
  copy->eval();
  const Experience& e = b->train_stream()[0];
  ParameterMap expected = parameter_zeros(*copy);
  int64_t batches = 0;
  for (int64_t pos = 0; pos < e.size(); pos += 16) {
    Batch batch = e.get(at::arange(pos, std::min<int64_t>(pos + 16, e.size()), at::kLong));
    copy->zero_grad();
    copy->forward(batch.x).norm(2, 1).mean().backward();
    for (const auto& p : copy->named_parameters()) expected[p.key()] += p.value().grad().abs();
    ++batches;
  }
  for (const auto& [name, t] : expected) {
    EXPECT_TRUE(at::allclose(mas->importance().at(name), t / double(batches), 1e-4, 1e-7)) << name;
  }
  // The next experience's importance is merged by the running average.
  ParameterMap first;  // a copy: the running average updates in place
  for (const auto& [name, t] : mas->importance()) first[name] = t.clone();
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  const ParameterMap now = MASPlugin::importance_on(*s, b->train_stream()[1]);
  for (const auto& [name, t] : first) {
    const at::Tensor merged = overlap(mas->importance().at(name), t);
    EXPECT_TRUE(at::allclose(merged, 0.5 * t + 0.5 * overlap(now.at(name), t), 1e-4, 1e-7)) << name;
  }
  // And the penalty is λ Σ Ω (θ − θ*)² against the weights after experience 1.
  double manual = 0;
  for (const auto& p : s->model().named_parameters()) {
    manual += (mas->importance().at(p.key()) * (p.value() - mas->reference().at(p.key())).pow(2)).sum().item<double>();
  }
  EXPECT_NEAR(quadratic_penalty(s->model(), mas->importance(), mas->reference()).item<double>(), manual, 1e-6);
  EXPECT_EQ(manual, 0.0);  // right after the experience θ = θ*
}

TEST(LFL, LossIsTheFeatureDistanceToThePreviousModelAndTheHeadStaysFrozen) {
  auto b = synthetic_benchmark(3);
  auto s = small_strategy(*b, 3);
  auto lfl = std::make_shared<LFLPlugin>(LFLPlugin::Options{2.0, true});
  s->add_plugin(lfl);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  ASSERT_TRUE(lfl->previous_model());
  ParameterMap head_at_start;
  class HeadProbe : public Plugin {
   public:
    explicit HeadProbe(ParameterMap& m) : m_(m) {}
    std::string name() const override { return "head_probe"; }
    bool part_of_state() const override { return false; }
    void before_training_exp(Strategy& s) override {
      for (const auto& p : s.model().named_parameters()) {
        if (p.key().rfind("classifier.", 0) == 0) m_[p.key()] = p.value().detach().clone();
      }
    }
    ParameterMap& m_;
  };
  s->add_plugin(std::make_shared<HeadProbe>(head_at_start));
  const ParameterMap features_before = parameter_values(s->model());
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  ASSERT_FALSE(head_at_start.empty());
  for (const auto& p : s->model().named_parameters()) {
    if (head_at_start.count(p.key())) {
      EXPECT_TRUE(at::equal(p.value(), head_at_start.at(p.key()))) << p.key() << " moved";
    } else {
      EXPECT_FALSE(at::equal(p.value(), features_before.at(p.key()))) << p.key() << " did not train";
    }
  }
  // The loss term, computed by hand.
  Batch batch = b->train_stream()[1].get(at::arange(0, 8, at::kLong));
  at::Tensor h = s->model().features(batch.x), h_old = lfl->previous_model()->features(batch.x);
  EXPECT_NEAR(lfl->feature_loss(h, batch.x).item<double>(), 2.0 * (h - h_old).pow(2).mean().item<double>(), 1e-6);
}

// The minimiser of ½uᵀPu + cᵀu over u >= 0 by trying every active set: the
// KKT point (u_F = −P_FF⁻¹c_F > 0, gradient >= 0 elsewhere).
std::vector<double> brute_force_qp(const std::vector<double>& P, const std::vector<double>& c) {
  const size_t n = c.size();
  std::vector<double> best;
  double best_f = 1e300;
  for (size_t mask = 0; mask < (size_t(1) << n); ++mask) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < n; ++i) {
      if (mask & (size_t(1) << i)) idx.push_back(i);
    }
    std::vector<double> A(idx.size() * idx.size()), rhs(idx.size());
    for (size_t a = 0; a < idx.size(); ++a) {
      rhs[a] = -c[idx[a]];
      for (size_t d = 0; d < idx.size(); ++d) A[a * idx.size() + d] = P[idx[a] * n + idx[d]];
    }
    std::vector<double> z = idx.empty() ? std::vector<double>() : solve_spd(A, rhs);
    std::vector<double> u(n, 0.0);
    bool ok = true;
    for (size_t a = 0; a < idx.size(); ++a) {
      u[idx[a]] = z[a];
      ok = ok && z[a] >= -1e-12;
    }
    if (!ok) continue;
    const double f = qp_objective(P, c, u);
    if (f < best_f) best_f = f, best = u;
  }
  return best;
}

TEST(GEM, TheQuadraticProgramSolverMatchesABruteForceOverActiveSets) {
  std::mt19937 rng(7);
  std::normal_distribution<double> nd;
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + trial % 6;
    // P = AᵀA + εI, positive definite; c anything.
    std::vector<double> A(n * (n + 2)), P(n * n), c(n);
    for (double& v : A) v = nd(rng);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        double d = 0;
        for (size_t k = 0; k < n + 2; ++k) d += A[k * n + i] * A[k * n + j];
        P[i * n + j] = d + (i == j ? 1e-3 : 0);
      }
      c[i] = nd(rng) * 3;
    }
    const std::vector<double> u = solve_nonnegative_qp(P, c);
    const std::vector<double> ref = brute_force_qp(P, c);
    ASSERT_EQ(u.size(), n);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_GE(u[i], 0.0);
      EXPECT_NEAR(u[i], ref[i], 1e-7 * (1 + std::fabs(ref[i]))) << "trial " << trial << " variable " << i;
    }
  }
}

TEST(GEM, ProjectedGradientIsTheClosestOneThatIncreasesNoPastLoss) {
  torch::manual_seed(5);
  for (int trial = 0; trial < 50; ++trial) {
    const int64_t k = 1 + trial % 4, p = 30;
    at::Tensor G = torch::randn({k, p}, torch::kDouble);
    at::Tensor g = -G.sum(0) * 0.3 + torch::randn({p}, torch::kDouble);
    at::Tensor proj = gem_project(G, g, /*margin=*/0.0, /*eps=*/0.0);
    // Feasible: no past experience's gradient has a negative dot product.
    EXPECT_GE(G.mv(proj).min().item<double>(), -1e-8);
    // Closest: brute force over the constraints held with equality, each
    // the projection of g onto {x : G_A x = 0}; the nearest feasible one.
    double best = 1e300;
    at::Tensor arg;
    for (int64_t mask = 0; mask < (int64_t(1) << k); ++mask) {
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < k; ++i) {
        if (mask & (int64_t(1) << i)) rows.push_back(i);
      }
      at::Tensor x = g.clone();
      if (!rows.empty()) {
        at::Tensor GA = G.index_select(0, at::tensor(rows, at::kLong));
        x = g - GA.t().mv(at::linalg_solve(GA.mm(GA.t()), GA.mv(g)));
      }
      if (G.mv(x).min().item<double>() < -1e-9) continue;
      const double d = (x - g).pow(2).sum().item<double>();
      if (d < best) best = d, arg = x;
    }
    ASSERT_TRUE(arg.defined());
    EXPECT_TRUE(at::allclose(proj, arg, 1e-6, 1e-8)) << "trial " << trial;
    EXPECT_NEAR((proj - g).pow(2).sum().item<double>(), best, 1e-6 * (1 + best));
  }
  // With the margin γ the dual variables are at least γ: g̃ − g = Gᵀv, v >= γ.
  at::Tensor G = torch::randn({3, 10}, torch::kDouble), g = -G.sum(0);
  at::Tensor proj = gem_project(G, g, 0.5, 1e-3);
  at::Tensor v = std::get<0>(at::linalg_lstsq(G.t(), (proj - g).unsqueeze(1))).squeeze(1);
  EXPECT_GE(v.min().item<double>(), 0.5 - 1e-6);
}

TEST(GEM, TrainingProjectsWithOneMemoryPerPastExperience) {
  auto b = synthetic_benchmark(4);
  auto s = small_strategy(*b, 4);
  auto before = std::make_shared<StepProbe>();  // the gradient before GEM
  s->add_plugin(before);
  auto gem = std::make_shared<GEMPlugin>(GEMPlugin::Options{50, 0.5, 4});
  s->add_plugin(gem);
  auto final_grad = std::make_shared<FinalGradProbe>();  // the one the step uses
  s->add_plugin(final_grad);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  EXPECT_EQ(gem->projections(), 0);
  EXPECT_EQ(gem->memory().size(), 10);  // 50 / 5 experiences
  // Every step of experience 1 uses gem_project(G, g) whenever g conflicts
  // with the memory gradient of experience 0, computed here at the same point.
  class Check : public Plugin {
   public:
    Check(GEMPlugin& gem, StepProbe& before, FinalGradProbe& fg) : gem_(gem), before_(before), fg_(fg) {}
    std::string name() const override { return "check"; }
    bool part_of_state() const override { return false; }
    void after_backward(Strategy& s) override {
      const at::Tensor saved = flat_gradient(s.model());
      const at::Tensor G = memory_gradients(s, {gem_.memory().get(at::arange(gem_.memory().size(), at::kLong))});
      set_flat_gradient(s.model(), saved);
      std::vector<at::Tensor> parts;
      for (const auto& p : s.model().named_parameters()) parts.push_back(before_.grad.at(p.key()).flatten());
      const at::Tensor g = at::cat(parts);
      const bool conflict = G.mv(g).lt(0).any().item<bool>();
      conflicts += conflict;
      const at::Tensor expected = conflict ? gem_project(G, g, 0.5) : g;
      max_diff = std::max(max_diff, (expected - fg_.last).abs().max().item<double>());
      // Projected: no longer against the past experience's gradient
      // (up to GEM's ε = 1e-3 regularisation of the dual).
      if (conflict) min_cos = std::min(min_cos, torch::cosine_similarity(G[0], fg_.last, 0).item<double>());
    }
    GEMPlugin& gem_;
    StepProbe& before_;
    FinalGradProbe& fg_;
    double max_diff = 0, min_cos = 1;
    int64_t conflicts = 0;
  };
  auto check = std::make_shared<Check>(*gem, *before, *final_grad);
  s->add_plugin(check);
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  EXPECT_GT(check->conflicts, 0);
  EXPECT_EQ(gem->projections(), check->conflicts);
  EXPECT_LT(check->max_diff, 1e-5);
  EXPECT_GT(check->min_cos, -0.5);
  EXPECT_EQ(gem->memory().size(), 20);
  EXPECT_EQ(gem->memory().slots_by_experience().at(1).size(0), 10);
}

TEST(AGEM, ProjectedGradientDoesNotIncreaseTheReferenceLoss) {
  torch::manual_seed(6);
  for (int trial = 0; trial < 20; ++trial) {
    at::Tensor ref = torch::randn({40}), g = torch::randn({40});
    at::Tensor proj = agem_project(g, ref);
    if (g.dot(ref).item<double>() >= 0) {
      EXPECT_TRUE(at::equal(proj, g));
    } else {
      EXPECT_NEAR(proj.dot(ref).item<double>(), 0.0, 1e-4);
      // The change is along g_ref only: the closest vector on that side.
      at::Tensor d = proj - g;
      EXPECT_NEAR(std::fabs(torch::cosine_similarity(d, ref, 0).item<double>()), 1.0, 1e-5);
    }
  }
  auto b = synthetic_benchmark(5);
  auto s = small_strategy(*b, 5);
  auto agem = std::make_shared<AGEMPlugin>(AGEMPlugin::Options{50, 8, 5});
  s->add_plugin(agem);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  EXPECT_EQ(agem->memory().size(), 10);
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  EXPECT_GT(agem->projections(), 0);
}

TEST(GDumb, RetrainsFromTheInitialWeightsOnAClassBalancedMemoryOnly) {
  auto b = synthetic_benchmark(6);
  auto s = small_strategy(*b, 6, 0.0, 8);
  const ParameterMap initial = parameter_values(s->model());
  auto gdumb = std::make_shared<GDumbPlugin>(GDumbPlugin::Options{20, 6});
  s->add_plugin(gdumb);
  class Probe : public Plugin {
   public:
    std::string name() const override { return "probe"; }
    bool part_of_state() const override { return false; }
    void before_training_exp(Strategy& s) override {
      first = true;
      iterations = 0;
      labels.clear();
    }
    void before_training_iteration(Strategy& s) override {
      if (first) at_first_step = parameter_values(s.model());
      first = false;
      ++iterations;
      for (int64_t i = 0; i < s.mb.y.size(0); ++i) labels.push_back(s.mb.y[i].item<int64_t>());
    }
    bool first = true;
    int64_t iterations = 0;
    ParameterMap at_first_step;
    std::vector<int64_t> labels;
  };
  auto probe = std::make_shared<Probe>();
  s->add_plugin(probe);
  for (int64_t e = 0; e < 3; ++e) {
    ASSERT_TRUE(s->train(b->train_stream()[size_t(e)]));
    // The first step of every experience starts from the initial weights
    // (the rows of a grown head: those first given to them).
    for (const auto& [name, t] : initial) {
      const at::Tensor now = probe->at_first_step.at(name);
      EXPECT_TRUE(at::equal(now.narrow(0, 0, t.size(0)), t)) << name << " experience " << e;
      EXPECT_TRUE(at::equal(gdumb->initial_weights().at(name).narrow(0, 0, t.size(0)), t)) << name;
    }
    // It trains on the memory alone: 20 samples, an equal share per class seen.
    EXPECT_EQ(gdumb->memory().size(), 20);
    EXPECT_EQ(int64_t(probe->labels.size()), 20);
    EXPECT_EQ(probe->iterations, 3);  // ceil(20 / 8)
    std::map<int64_t, int64_t> per_class;
    for (int64_t y : probe->labels) ++per_class[y];
    EXPECT_EQ(int64_t(per_class.size()), 2 * (e + 1));
    for (const auto& [c, n] : per_class) EXPECT_LE(std::abs(n - 20 / (2 * (e + 1))), 1) << "class " << c;
  }
}

TEST(DER, LossAddsTheDistanceBetweenCurrentAndStoredLogits) {
  auto b = synthetic_benchmark(7);
  for (double beta : {0.0, 0.5}) {
    auto s = small_strategy(*b, 7);
    auto der = std::make_shared<DERPlugin>(DERPlugin::Options{30, 6, 0.3, beta, 7});
    s->add_plugin(der);
    ASSERT_TRUE(s->train(b->train_stream()[0]));
    ASSERT_TRUE(s->train(b->train_stream()[1]));
    ASSERT_EQ(der->memory().size(), 30);
    EXPECT_EQ(der->memory().seen(), b->train_stream()[0].size() + b->train_stream()[1].size());
    // A batch as the loop builds it: new rows, then memory batch A (and B).
    MiniBatch mb = MiniBatch::from(b->train_stream()[1].get(at::arange(0, 10, at::kLong)));
    der->adapt_batch(*s, mb);
    ASSERT_EQ(mb.size(), beta > 0 ? 22 : 16);
    s->mb = mb;
    s->mb_output = s->model().forward(mb.x);
    namespace F = torch::nn::functional;
    const at::Tensor& out = s->mb_output;
    const at::Tensor z = mb.payload.at("logits").narrow(0, 10, 6), m = mb.payload.at("logit_mask").narrow(0, 10, 6);
    const int64_t w = std::min(out.size(1), z.size(1));
    double expected = F::cross_entropy(out.narrow(0, 0, 10), mb.y.narrow(0, 0, 10)).item<double>() +
                      0.3 * ((out.narrow(0, 10, 6).narrow(1, 0, w) - z.narrow(1, 0, w)).pow(2) * m.narrow(1, 0, w))
                                .sum()
                                .item<double>() /
                          m.narrow(1, 0, w).sum().item<double>();
    if (beta > 0) expected += beta * F::cross_entropy(out.narrow(0, 16, 6), mb.y.narrow(0, 16, 6)).item<double>();
    EXPECT_NEAR(der->loss(*s).item<double>(), expected, 1e-5);
    // The stored logits are the model's at insertion, not zeros.
    EXPECT_GT(z.abs().sum().item<double>(), 0);
    // Logits stored while the head had 2 outputs are compared on those only.
    EXPECT_GT(m.sum().item<double>(), 0);
    s->mb = MiniBatch();
    s->mb_output = at::Tensor();
  }
}

TEST(ERACE, NewSamplesCompeteOnlyWithTheClassesOfTheirBatch) {
  at::Tensor logits = torch::randn({4, 6}, torch::requires_grad());
  at::Tensor y = torch::tensor({1, 3, 1, 3}, torch::kLong);
  at::Tensor masked = ERACEPlugin::masked_new_logits(logits, y);
  torch::nn::functional::cross_entropy(masked, y).backward();
  for (int64_t c = 0; c < 6; ++c) {
    const double g = logits.grad().select(1, c).abs().sum().item<double>();
    if (c == 1 || c == 3) {
      EXPECT_GT(g, 0) << "class " << c;
    } else {
      EXPECT_EQ(g, 0) << "class " << c << " of no new sample still gets a gradient";
    }
  }
  // In training: the memory is a reservoir over the stream, and the loss is
  // the masked CE of the new rows plus the CE of the memory rows.
  auto b = synthetic_benchmark(8);
  auto s = small_strategy(*b, 8);
  auto ace = std::make_shared<ERACEPlugin>(ERACEPlugin::Options{30, 8, 8});
  s->add_plugin(ace);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  EXPECT_EQ(ace->memory().seen(), b->train_stream()[0].size() + b->train_stream()[1].size());
  EXPECT_EQ(ace->memory().slots_by_experience().size(), 2u);
  MiniBatch mb = MiniBatch::from(b->train_stream()[1].get(at::arange(0, 10, at::kLong)));
  ace->adapt_batch(*s, mb);
  s->mb = mb;
  s->mb_output = s->model().forward(mb.x);
  namespace F = torch::nn::functional;
  const at::Tensor y_new = mb.y.narrow(0, 0, 10);
  const double expected =
      F::cross_entropy(ERACEPlugin::masked_new_logits(s->mb_output.narrow(0, 0, 10), y_new), y_new).item<double>() +
      F::cross_entropy(s->mb_output.narrow(0, 10, 8), mb.y.narrow(0, 10, 8)).item<double>();
  EXPECT_NEAR(ace->loss(*s).item<double>(), expected, 1e-5);
  s->mb = MiniBatch();
  s->mb_output = at::Tensor();
}

TEST(ICaRL, ExemplarsByHerdingAndNearestMeanClassification) {
  auto b = synthetic_benchmark(9);
  auto s = small_strategy(*b, 9);
  auto icarl = std::make_shared<ICaRLPlugin>(ICaRLPlugin::Options{24, 9});
  s->add_plugin(icarl);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  Model& model = s->model();
  model.eval();
  torch::NoGradGuard ng;
  auto feats = [&](const at::Tensor& x) {
    return torch::nn::functional::normalize(model.features(x), torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  // The exemplars of a class of the last experience are the first picks of
  // herding on the normalised features: each brings the mean closest.
  const Experience& e1 = b->train_stream()[1];
  const int64_t c = e1.classes()[0];
  at::Tensor cand = e1.targets().eq(c).nonzero().flatten();
  at::Tensor expected = std::get<0>(cand.index_select(0, herding_order(feats(e1.get(cand).x), 6)).sort());
  at::Tensor slots = icarl->memory().slots_by_class().at(c);
  EXPECT_EQ(slots.size(0), 6);  // 24 / 4 classes
  EXPECT_TRUE(at::equal(std::get<0>(icarl->memory().positions().index_select(0, slots).sort()), expected));
  // Class means: the normalised mean of each class's normalised exemplar features.
  const MiniBatch ex = icarl->memory().get(slots);
  at::Tensor mu = feats(ex.x).mean(0);
  mu = mu / mu.norm();
  const at::Tensor row = icarl->class_means()[icarl->mean_classes().eq(c).nonzero().item<int64_t>()];
  EXPECT_TRUE(at::allclose(row, mu, 1e-5, 1e-6));
  // Classification: the nearest mean answers.
  Batch test = b->test_stream()[1].get(at::arange(0, 20, at::kLong));
  at::Tensor scores = icarl->nme_scores(model, test.x, model.num_outputs());
  at::Tensor f = feats(test.x);
  for (int64_t i = 0; i < 20; ++i) {
    at::Tensor d = (icarl->class_means() - f[i].unsqueeze(0)).norm(2, 1);
    EXPECT_EQ(scores[i].argmax().item<int64_t>(), icarl->mean_classes()[d.argmin()].item<int64_t>());
  }
  model.train();
}

TEST(ICaRL, LossDistilsThePreviousModelsSigmoidsOnThePastClasses) {
  auto b = synthetic_benchmark(10);
  auto s = small_strategy(*b, 10);
  auto icarl = std::make_shared<ICaRLPlugin>(ICaRLPlugin::Options{24, 10});
  s->add_plugin(icarl);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  // The previous model is the model as experience 0 left it.
  auto previous = s->model().clone_model();
  previous->eval();
  // A batch of experience 1 as its training sees it (the head grown).
  s->model().adapt(b->train_stream()[1].classes());
  s->mb = MiniBatch::from(b->train_stream()[1].get(at::arange(0, 12, at::kLong)));
  s->mb_output = s->model().forward(s->mb.x);
  // Targets: one-hot, the classes of experience 0 replaced by the previous
  // model's sigmoid outputs.
  at::Tensor target = torch::nn::functional::one_hot(s->mb.y, s->mb_output.size(1)).to(torch::kFloat);
  at::Tensor old = torch::sigmoid(previous->forward(s->mb.x)).detach();
  for (int64_t c : b->train_stream()[0].classes()) target.select(1, c).copy_(old.select(1, c));
  const double expected =
      torch::nn::functional::binary_cross_entropy_with_logits(s->mb_output, target).item<double>();
  EXPECT_NEAR(icarl->loss(*s).item<double>(), expected, 1e-6);
  // Without distillation it would be the one-hot loss, which differs.
  const at::Tensor onehot = torch::nn::functional::one_hot(s->mb.y, s->mb_output.size(1)).to(torch::kFloat);
  EXPECT_GT(std::fabs(torch::nn::functional::binary_cross_entropy_with_logits(s->mb_output, onehot).item<double>() -
                      expected),
            1e-4);
  s->mb = MiniBatch();
  s->mb_output = at::Tensor();
}


TEST(RWalk, ImportanceIsTheNormalisedFisherPlusThePathScores) {
  auto b = synthetic_benchmark(11);
  auto s = small_strategy(*b, 11);
  // Independently: the EWC++ Fisher and the windowed path scores from the
  // steps a probe records before RWalk sees them.
  class Reference : public StepProbe {
   public:
    void before_training_exp(Strategy& st) override {
      StepProbe::before_training_exp(st);
      if (fisher.empty()) fisher = parameter_zeros(st.model());
      scores = parameter_zeros(st.model());
      window = parameter_zeros(st.model());
      window_start = parameter_values(st.model());
      steps = 0;
    }
    void after_backward(Strategy& st) override {
      StepProbe::after_backward(st);
      for (auto& [name, f] : fisher) f = 0.9 * grad.at(name).pow(2) + 0.1 * f;
    }
    void after_update(Strategy& st) override {
      for (const auto& p : st.model().named_parameters()) {
        window[p.key()] = window[p.key()] - grad[p.key()] * (p.value().detach() - before[p.key()]);
      }
      if (++steps < 4) return;
      for (const auto& p : st.model().named_parameters()) {
        const at::Tensor d = p.value().detach() - window_start.at(p.key());
        scores[p.key()] = scores[p.key()] + window[p.key()] / (0.5 * fisher[p.key()] * d.pow(2) + 1.1920928955078125e-07);
        window[p.key()] = at::zeros_like(window[p.key()]);
      }
      window_start = parameter_values(st.model());
      steps = 0;
    }
    ParameterMap fisher, scores, window, window_start;
    int steps = 0;
  };
  auto ref = std::make_shared<Reference>();
  s->add_plugin(ref);
  auto rwalk = std::make_shared<RWalkPlugin>(RWalkPlugin::Options{0.1, 0.9, 4});
  s->add_plugin(rwalk);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  double fmax = 0, smax = 0;
  for (const auto& [name, f] : ref->fisher) {
    fmax = std::max(fmax, f.max().item<double>());
    smax = std::max(smax, ref->scores.at(name).max().item<double>());
  }
  ASSERT_GT(fmax, 0);
  ASSERT_GT(smax, 0);
  for (const auto& [name, f] : ref->fisher) {
    EXPECT_TRUE(at::allclose(rwalk->fisher().at(name), f, 1e-4, 1e-9)) << name;
    const at::Tensor expected = f / fmax + ref->scores.at(name).clamp_min(0) / smax;
    EXPECT_TRUE(at::allclose(rwalk->importance().at(name), expected, 1e-3, 1e-6)) << name;
  }
  // The reference is the weights after the experience; the next one's
  // penalty grows from 0 as the weights leave it.
  EXPECT_EQ(quadratic_penalty(s->model(), rwalk->importance(), rwalk->reference()).item<double>(), 0.0);
  const ParameterMap imp0 = rwalk->importance(), ref0 = rwalk->reference();
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  EXPECT_GT(quadratic_penalty(s->model(), imp0, ref0).item<double>(), 0.0);
}

TEST(MIR, ReplaysTheCandidatesAVirtualStepWouldHurtMost) {
  auto b = synthetic_benchmark(12);
  auto s = small_strategy(*b, 12);
  auto mir = std::make_shared<MIRPlugin>(MIRPlugin::Options{40, 5, 20, 12});
  s->add_plugin(mir);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  ASSERT_EQ(mir->memory().size(), 40);
  s->model().adapt(b->train_stream()[1].classes());
  {
    // Smaller logits: the memory's losses are not all 0 in float, so a
    // step can raise them.
    torch::NoGradGuard ng;
    for (auto& p : s->model().parameters()) p.mul_(0.1);
  }
  MiniBatch mb = MiniBatch::from(b->train_stream()[1].get(at::arange(0, 16, at::kLong)));
  mir->adapt_batch(*s, mb);
  ASSERT_EQ(mb.size(), 21);
  // Independently: the virtual SGD step on the new rows, on a copy.
  auto copy = s->model().clone_model();
  copy->train();
  torch::nn::functional::cross_entropy(copy->forward(mb.x.narrow(0, 0, 16)), mb.y.narrow(0, 0, 16)).backward();
  const MiniBatch cand = mir->memory().get(mir->last_candidates());
  copy->eval();
  torch::NoGradGuard ng;
  const auto none = torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone);
  at::Tensor before = torch::nn::functional::cross_entropy(copy->forward(cand.x), cand.y, none);
  for (auto& p : copy->parameters()) p.sub_(p.grad() * 0.05);
  at::Tensor after = torch::nn::functional::cross_entropy(copy->forward(cand.x), cand.y, none);
  const at::Tensor scores = after - before;
  EXPECT_TRUE(at::allclose(mir->last_scores(), scores, 1e-4, 1e-6));
  EXPECT_GT(scores.abs().max().item<double>(), 0);
  // The replayed rows are the 5 highest.
  const at::Tensor top = mir->last_candidates().index_select(0, std::get<1>(scores.topk(5)));
  EXPECT_TRUE(at::equal(std::get<0>(top.sort()), std::get<0>(mir->last_chosen().sort())));
  EXPECT_TRUE(at::equal(std::get<0>(mb.memory_slot.narrow(0, 16, 5).sort()), std::get<0>(top.sort())));
}

// The PPP loss written out sample by sample, in double.
double ppp_by_hand(const at::Tensor& xf, const at::Tensor& yt, const at::Tensor& pf, const at::Tensor& ct, double T) {
  const at::Tensor x = xf.to(torch::kDouble), p = pf.to(torch::kDouble);
  const int64_t B = x.size(0), C = p.size(0);
  auto e = [&](const at::Tensor& a, const at::Tensor& b) { return std::exp(a.dot(b).item<double>() / T); };
  double total = 0;
  for (int64_t ci = 0; ci < C; ++ci) {
    const int64_t c = ct[ci].item<int64_t>();
    std::vector<int64_t> in, out;
    for (int64_t i = 0; i < B; ++i) (yt[i].item<int64_t>() == c ? in : out).push_back(i);
    if (in.empty()) continue;
    auto others = [&](const at::Tensor& v) {
      double d = 0;
      for (int64_t k = 0; k < C; ++k) {
        if (k != ci) d += e(p[k], v);
      }
      return d;
    };
    for (int64_t i : in) {  // attractor
      const double den = others(x[i]);
      double sum = 0;
      for (int64_t j : in) {
        if (j != i) sum += e(x[j], x[i]) / (e(x[j], x[i]) + den);
      }
      sum += e(p[ci], x[i]) / (e(p[ci], x[i]) + den);
      total -= std::log(sum / double(in.size()));
    }
    for (int64_t l : out) {  // repellor
      const double den = others(x[l]);
      const double qp = e(p[ci], x[l]) / (e(p[ci], x[l]) + den);
      for (int64_t j : in) {
        const double q = e(x[j], x[l]) / (e(x[j], x[l]) + den);
        total -= std::log(1 - (q + qp) / 2);
      }
    }
  }
  return total / double(B);
}

TEST(CoPE, PrototypesFollowTheEmbeddingsAndThePPPLossIsThePapers) {
  torch::manual_seed(13);
  at::Tensor x = torch::nn::functional::normalize(torch::randn({9, 5}),
                                                  torch::nn::functional::NormalizeFuncOptions().dim(1));
  at::Tensor y = torch::tensor({0, 2, 2, 5, 0, 2, 5, 5, 0}, torch::kLong);
  at::Tensor protos = torch::nn::functional::normalize(torch::randn({4, 5}),
                                                       torch::nn::functional::NormalizeFuncOptions().dim(1));
  at::Tensor classes = torch::tensor({0, 2, 5, 7}, torch::kLong);
  EXPECT_NEAR(ppp_loss(x, y, protos, classes, 0.1).item<double>(), ppp_by_hand(x, y, protos, classes, 0.1), 1e-4);
  EXPECT_NEAR(ppp_loss(x, y, protos, classes, 0.5).item<double>(), ppp_by_hand(x, y, protos, classes, 0.5), 1e-5);

  auto b = synthetic_benchmark(13);
  auto s = small_strategy(*b, 13);
  class Probe : public Plugin {
   public:
    std::string name() const override { return "probe"; }
    bool part_of_state() const override { return false; }
    void after_training_iteration(Strategy& st) override {
      emb = torch::nn::functional::normalize(st.mb_features.detach(), torch::nn::functional::NormalizeFuncOptions().dim(1));
      labels = st.mb.y.clone();
    }
    at::Tensor emb, labels;
  };
  auto probe = std::make_shared<Probe>();
  s->add_plugin(probe);
  auto cope = std::make_shared<CoPEPlugin>(CoPEPlugin::Options{20, 8, 0.9, 0.1, 13});
  s->add_plugin(cope);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  ASSERT_EQ(cope->classes().size(0), 2);
  // One iteration of experience 1: new classes get prototypes; each class
  // of the batch moves its prototype by the momentum rule.
  s->set_iteration_callback([](Strategy& st) { st.request_stop(); });
  at::Tensor before = cope->prototypes().clone();
  ASSERT_FALSE(s->train(b->train_stream()[1]));
  ASSERT_EQ(cope->classes().size(0), 4);
  for (int64_t i = 0; i < 4; ++i) {
    const at::Tensor rows = probe->labels.eq(cope->classes()[i]).nonzero().flatten();
    if (i < 2 && rows.numel() == 0) {
      EXPECT_TRUE(at::equal(cope->prototypes()[i], before[i]));
      continue;
    }
    const at::Tensor mean = probe->emb.index_select(0, rows).mean(0);
    // A class's first batch sets its prototype to the batch's mean embedding.
    at::Tensor p = i >= 2 ? mean : 0.9 * before[i] + 0.1 * mean;
    EXPECT_TRUE(at::allclose(cope->prototypes()[i], p / p.norm(), 1e-5, 1e-6)) << "class " << i;
  }
  // The memory batch is in the iteration: both old classes' rows appear.
  EXPECT_GT(probe->labels.size(0), 8);
  // Prediction is the nearest prototype.
  s->set_iteration_callback(nullptr);
  s->clear_stop();
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  Model& model = s->model();
  model.eval();
  torch::NoGradGuard ng;
  Batch test = b->test_stream()[0].get(at::arange(0, 10, at::kLong));
  s->mb = MiniBatch::from(test);
  s->mb_features = model.features(test.x);
  s->mb_output = model.head(s->mb_features);
  cope->after_eval_forward(*s);
  const at::Tensor f = torch::nn::functional::normalize(s->mb_features, torch::nn::functional::NormalizeFuncOptions().dim(1));
  for (int64_t i = 0; i < 10; ++i) {
    const int64_t best = cope->classes()[f[i].unsqueeze(0).mm(cope->prototypes().t()).argmax().item<int64_t>()].item<int64_t>();
    EXPECT_EQ(s->mb_output[i].argmax().item<int64_t>(), best);
  }
  s->mb = MiniBatch();
  s->mb_features = s->mb_output = at::Tensor();
  model.train();
}

TEST(BiC, TheBiasLayerIsFittedOnTheValidationMemoryOnly) {
  auto b = synthetic_benchmark(14);
  auto s = small_strategy(*b, 14);
  class Probe : public Plugin {
   public:
    std::string name() const override { return "probe"; }
    bool part_of_state() const override { return false; }
    void before_training_iteration(Strategy& st) override {
      for (int64_t i = 0; i < st.mb_positions.size(0); ++i) {
        const int64_t p = st.mb_positions[i].item<int64_t>();
        if (p >= 0) trained[st.experience()->index()].insert(p);
      }
    }
    std::map<int64_t, std::set<int64_t>> trained;
  };
  auto probe = std::make_shared<Probe>();
  s->add_plugin(probe);
  auto bic = std::make_shared<BiCPlugin>(BiCPlugin::Options{40, 0.25, 2.0, 2000, 0.1, 14});
  s->add_plugin(bic);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  EXPECT_TRUE(bic->bias_layers().empty());  // nothing to correct after the first experience
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  ASSERT_EQ(bic->bias_layers().size(), 1u);
  const auto& layer = bic->bias_layers()[0];
  EXPECT_EQ(layer.classes, b->train_stream()[1].classes());
  EXPECT_EQ(bic->validation_memory().size(), 10);
  EXPECT_EQ(bic->train_memory().size(), 30);
  // No validation sample was trained on, nor kept in the training memory.
  const Memory& val = bic->validation_memory();
  for (int64_t i = 0; i < val.size(); ++i) {
    const int64_t e = val.experiences()[i].item<int64_t>(), p = val.positions()[i].item<int64_t>();
    EXPECT_FALSE(probe->trained[e].count(p)) << "validation sample " << e << ":" << p << " was trained on";
    const Memory& tm = bic->train_memory();
    EXPECT_FALSE(tm.experiences().eq(e).logical_and(tm.positions().eq(p)).any().item<bool>());
  }
  // (α, β) minimise the validation loss of the corrected logits (the
  // gradient vanishes there) and not the training memory's.
  Model& model = s->model();
  model.eval();
  auto grad_at = [&](const MiniBatch& m) {
    at::Tensor logits = model.forward(m.x).detach();
    at::Tensor ab = torch::tensor({layer.alpha, layer.beta}, torch::requires_grad());
    at::Tensor mask = at::zeros({logits.size(1)});
    for (int64_t c : layer.classes) mask[c] = 1.0;
    at::Tensor q = logits * (1 - mask) + (logits * ab[0].to(torch::kFloat) + ab[1].to(torch::kFloat)) * mask;
    torch::nn::functional::cross_entropy(q, m.y).backward();
    return ab.grad().abs().max().item<double>();
  };
  const double on_val = grad_at(val.get(at::arange(val.size(), at::kLong)));
  const double on_train = grad_at(bic->train_memory().get(at::arange(bic->train_memory().size(), at::kLong)));
  EXPECT_LT(on_val, 1e-3);
  EXPECT_GT(on_train, 10 * on_val) << "the layer fits the training memory as well as the validation memory";
  EXPECT_TRUE(layer.alpha != 1.0 || layer.beta != 0.0);
  // Evaluation scores are the corrected logits.
  torch::NoGradGuard ng;
  Batch test = b->test_stream()[1].get(at::arange(0, 6, at::kLong));
  s->mb = MiniBatch::from(test);
  s->mb_output = model.forward(test.x);
  const at::Tensor raw = s->mb_output.clone();
  bic->after_eval_forward(*s);
  EXPECT_TRUE(at::allclose(s->mb_output, BiCPlugin::corrected(raw, {bic->bias_layers().back()})));
  for (int64_t c : layer.classes) {
    EXPECT_TRUE(at::allclose(s->mb_output.select(1, c), raw.select(1, c) * layer.alpha + layer.beta, 1e-5, 1e-6));
  }
  s->mb = MiniBatch();
  s->mb_output = at::Tensor();
  model.train();
}

TEST(ERAML, NewSamplesAreTrainedByTheContrastiveLossAgainstMemoryPositivesAndNegatives) {
  // The supervised contrastive loss, sample by sample.
  torch::manual_seed(15);
  const auto unit = torch::nn::functional::NormalizeFuncOptions().dim(1);
  at::Tensor a = torch::nn::functional::normalize(torch::randn({6, 4}), unit);
  at::Tensor f = torch::nn::functional::normalize(torch::randn({6, 4}), unit);
  at::Tensor ya = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong), yf = torch::tensor({0, 1, 2, 1, 2, 0}, torch::kLong);
  double expected = 0;
  for (int64_t i = 0; i < 6; ++i) {
    double z = 0, sum = 0;
    int64_t npos = 0;
    for (int64_t j = 0; j < 6; ++j) z += std::exp(a[i].dot(f[j]).item<double>() / 0.1);
    for (int64_t j = 0; j < 6; ++j) {
      if (ya[i].item<int64_t>() != yf[j].item<int64_t>()) continue;
      sum += a[i].dot(f[j]).item<double>() / 0.1 - std::log(z);
      ++npos;
    }
    expected += -(0.1 / 0.07) * sum / double(npos) / 6.0;
  }
  EXPECT_NEAR(supcon_loss(a, f, ya, yf, 0.1, 0.07).item<double>(), expected, 1e-4);

  auto b = synthetic_benchmark(15);
  auto s = small_strategy(*b, 15);
  auto aml = std::make_shared<ERAMLPlugin>(ERAMLPlugin::Options{30, 8, 0.1, 0.07, 15});
  s->add_plugin(aml);
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  MiniBatch mb = MiniBatch::from(b->train_stream()[1].get(at::arange(0, 10, at::kLong)));
  aml->adapt_batch(*s, mb);
  const auto& L = aml->layout();
  ASSERT_EQ(L.fresh, 10);
  ASSERT_EQ(L.memory, 8);
  ASSERT_TRUE(L.anchors.defined());
  const int64_t na = L.anchors.size(0);
  ASSERT_GT(na, 0);
  ASSERT_EQ(mb.size(), 18 + 2 * na);
  for (int64_t k = 0; k < na; ++k) {
    const int64_t i = L.anchors[k].item<int64_t>();
    EXPECT_EQ(mb.y[18 + k].item<int64_t>(), mb.y[i].item<int64_t>()) << "positive of anchor " << i;
    EXPECT_NE(mb.y[18 + na + k].item<int64_t>(), mb.y[i].item<int64_t>()) << "negative of anchor " << i;
    EXPECT_GE(mb.memory_slot[18 + k].item<int64_t>(), 0);
  }
  s->mb = mb;
  s->mb_features = s->model().features(mb.x);
  s->mb_output = s->model().head(s->mb_features);
  const auto norm = [](const at::Tensor& h) { return h / (h.norm(2, 1, true) + 1e-5); };
  const at::Tensor h_in = norm(s->mb_features.index_select(0, L.anchors));
  const at::Tensor h_pn = norm(s->mb_features.narrow(0, 18, 2 * na));
  const double want =
      torch::nn::functional::cross_entropy(s->mb_output.narrow(0, 10, 8), mb.y.narrow(0, 10, 8)).item<double>() +
      supcon_loss(h_in.repeat({2, 1}), h_pn, mb.y.index_select(0, L.anchors).repeat({2}), mb.y.narrow(0, 18, 2 * na),
                  0.1, 0.07)
          .item<double>();
  EXPECT_NEAR(aml->loss(*s).item<double>(), want, 1e-5);
  // The new rows get no cross-entropy: their logits have no gradient.
  s->mb_output.retain_grad();
  aml->loss(*s).backward();
  EXPECT_EQ(s->mb_output.grad().narrow(0, 0, 10).abs().sum().item<double>(), 0.0);
  s->mb = MiniBatch();
  s->mb_features = s->mb_output = at::Tensor();
}

TEST(GSS, StoredSamplesAreScoredByTheirGradientsSimilarityToMemorySubsets) {
  at::Tensor g = torch::randn({5, 7}), r = torch::randn({3, 7});
  at::Tensor cos = max_cosine_similarity(g, r);
  for (int64_t i = 0; i < 5; ++i) {
    double best = -2;
    for (int64_t k = 0; k < 3; ++k) best = std::max(best, torch::cosine_similarity(g[i], r[k], 0).item<double>());
    EXPECT_NEAR(cos[i].item<double>(), best, 1e-5);
  }
  auto b = synthetic_benchmark(16);
  auto s = small_strategy(*b, 16, 0.0, 8);
  auto gss = std::make_shared<GSSPlugin>(GSSPlugin::Options{40, 8, 2, 16});
  s->add_plugin(gss);
  int calls = 0;
  s->set_iteration_callback([&](Strategy& st) {
    if (++calls == 2) st.request_stop();
  });
  ASSERT_FALSE(s->train(b->train_stream()[0]));
  ASSERT_EQ(gss->memory().size(), 16);
  // The first batch stored scores 0.1; the second, gradient similarities.
  EXPECT_TRUE(at::allclose(gss->scores().narrow(0, 0, 8), at::full({8}, 0.1f)));
  EXPECT_LE(gss->scores().abs().max().item<double>(), 1.0 + 1e-6);
  // The next batch's scores, computed independently from a copy of the
  // memory (same generator state, so the same random subsets).
  StateTree tree;
  StateWriter w(tree);
  gss->save_state(w);
  GSSPlugin copy(GSSPlugin::Options{40, 8, 2, 16});
  copy.load_state(StateReader(tree));
  const Experience& e = b->train_stream()[0];
  s->mb = MiniBatch::from(e.get(at::arange(100, 108, at::kLong)));
  s->mb_positions = at::arange(100, 108, at::kLong);
  s->model().eval();
  const at::Tensor ref = copy.subset_gradients(*s, 8);
  ASSERT_TRUE(ref.defined());
  ASSERT_EQ(ref.size(0), 2);
  std::vector<MiniBatch> one;
  for (int64_t i = 0; i < 8; ++i) one.push_back(s->mb.narrow(i, 1));
  const at::Tensor expected = max_cosine_similarity(memory_gradients(*s, one), ref);
  s->model().train();
  gss->after_training_iteration(*s);
  ASSERT_EQ(gss->memory().size(), 24);
  EXPECT_TRUE(at::allclose(gss->scores().narrow(0, 16, 8), expected, 1e-4, 1e-6));
  EXPECT_TRUE(at::equal(gss->memory().positions().narrow(0, 16, 8), at::arange(100, 108, at::kLong)));
  s->mb = MiniBatch();
  s->mb_positions = at::Tensor();
  // Full: the memory stays at its size, every score a cosine similarity.
  s->set_iteration_callback(nullptr);
  s->clear_stop();
  ASSERT_TRUE(s->train(b->train_stream()[0]));
  ASSERT_TRUE(s->train(b->train_stream()[1]));
  EXPECT_EQ(gss->memory().size(), 40);
  EXPECT_LE(gss->scores().abs().max().item<double>(), 1.0 + 1e-6);
}

}  // namespace
}  // namespace continua
