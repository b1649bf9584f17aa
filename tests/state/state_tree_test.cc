#include <gtest/gtest.h>
#include <torch/torch.h>

#include "continua/errors.h"
#include "continua/state/object_registry.h"
#include "continua/state/state_tree.h"

namespace continua {
namespace {

TEST(StateTree, JoinKey) {
  EXPECT_EQ(join_key("", "a"), "a");
  EXPECT_EQ(join_key("a", ""), "a");
  EXPECT_EQ(join_key("a.b", "c.d"), "a.b.c.d");
}

TEST(StateTree, WriteReadRoundTrip) {
  StateTree tree;
  StateWriter w(tree, "strategy");
  w.child("clock").write("iteration", int64_t(42));
  w.write("lr", 0.125);
  w.write("name", "naive");
  w.write("weights", torch::arange(6, torch::kFloat).reshape({2, 3}));
  StateReader r(tree, "strategy");
  EXPECT_EQ(r.child("clock").get<int64_t>("iteration"), 42);
  EXPECT_EQ(r.get<double>("lr"), 0.125);
  EXPECT_EQ(r.get<std::string>("name"), "naive");
  EXPECT_TRUE(r.tensor("weights").equal(torch::arange(6, torch::kFloat).reshape({2, 3})));
  EXPECT_TRUE(r.has_child("clock"));
  EXPECT_FALSE(r.has_child("clo"));
  EXPECT_EQ(tree.size(), 4u);
}

TEST(StateTree, MissingKeyNamesFullPathAndSource) {
  StateTree tree;
  tree.set_source("/ckpt/a.safetensors");
  StateReader r(tree, "strategy");
  try {
    r.child("plugins").child("ewc").tensor("importances.fc1.weight");
    FAIL() << "no exception";
  } catch (const InvalidArgument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("strategy.plugins.ewc.importances.fc1.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("/ckpt/a.safetensors"), std::string::npos) << m;
  }
}

TEST(StateTree, WrongKindIsAnError) {
  StateTree tree;
  StateWriter(tree).write("x", int64_t(1));
  StateReader r(tree);
  EXPECT_THROW(r.tensor("x"), InvalidArgument);
  EXPECT_THROW(r.get<std::string>("x"), InvalidArgument);
}

TEST(StateTree, DigestSeesEveryChange) {
  auto make = [](float v, int64_t n, const std::string& key) {
    StateTree t;
    StateWriter w(t);
    w.write(key, torch::full({3}, v));
    w.write("n", n);
    return t.digest();
  };
  const std::string base = make(1.0f, 1, "a");
  EXPECT_EQ(base.size(), 64u);
  EXPECT_EQ(base, make(1.0f, 1, "a"));
  EXPECT_NE(base, make(1.5f, 1, "a"));
  EXPECT_NE(base, make(1.0f, 2, "a"));
  EXPECT_NE(base, make(1.0f, 1, "b"));
  // Same values, other dtype: different digest.
  StateTree t;
  StateWriter(t).write("a", torch::full({3}, 1.0, torch::kDouble));
  StateWriter(t).write("n", int64_t(1));
  EXPECT_NE(base, t.digest());
}

TEST(StateTree, CloneDoesNotAlias) {
  StateTree tree;
  at::Tensor live = torch::zeros({4});
  StateWriter(tree).write("t", live);
  StateTree copy = tree.clone();
  live.fill_(7);
  EXPECT_TRUE(std::get<at::Tensor>(*copy.find("t")).equal(torch::zeros({4})));
  EXPECT_TRUE(std::get<at::Tensor>(*tree.find("t")).equal(live));
}

TEST(StateTree, ErasePrefixOnlyWholeComponents) {
  StateTree tree;
  StateWriter w(tree);
  w.write("a.b", int64_t(1));
  w.write("a.b.c", int64_t(2));
  w.write("a.bc", int64_t(3));
  tree.erase_prefix("a.b");
  EXPECT_FALSE(tree.contains("a.b"));
  EXPECT_FALSE(tree.contains("a.b.c"));
  EXPECT_TRUE(tree.contains("a.bc"));
}

struct Thing : SerializableObject {
  explicit Thing(int v) : v(v) {}
  int v;
  std::string type_name() const override { return "test-thing"; }
  nlohmann::json constructor_args() const override { return {{"v", v}}; }
};
CONTINUA_REGISTER_OBJECT("test-thing", [](const nlohmann::json& a, ObjectPool&) {
  return std::make_shared<Thing>(a.at("v").get<int>());
});

TEST(ObjectPool, ReusesLiveObjectsAndBuildsOthersOnce) {
  auto live = std::make_shared<Thing>(1);
  ObjectPool pool({live});
  EXPECT_EQ(pool.get("test-thing", {{"v", 1}}).get(), live.get());
  auto built = pool.get("test-thing", {{"v", 2}});
  EXPECT_NE(built.get(), live.get());
  EXPECT_EQ(static_cast<const Thing&>(*built).v, 2);
  EXPECT_EQ(pool.get(describe(Thing(2))).get(), built.get());
  EXPECT_EQ(pool.built(), 1u);
  EXPECT_THROW(pool.get("no-such-type", {}), InvalidArgument);
  EXPECT_THROW(pool.get(nlohmann::json{{"type", 3}}), InvalidArgument);
}

}  // namespace
}  // namespace continua
