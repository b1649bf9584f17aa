#include "continua/state/state_tree.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "continua/errors.h"
#include "continua/io/sha256.h"
#include "continua/state/object_registry.h"

namespace continua {

std::string join_key(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  if (name.empty()) return std::string(prefix);
  std::string key;
  key.reserve(prefix.size() + 1 + name.size());
  key.append(prefix).append(".").append(name);
  return key;
}

void StateTree::set(const std::string& key, StateValue value) {
  entries_[key] = std::move(value);
}

const StateValue* StateTree::find(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

void StateTree::erase_prefix(const std::string& prefix) {
  auto it = entries_.lower_bound(prefix);
  while (it != entries_.end()) {
    const std::string& k = it->first;
    if (k.compare(0, prefix.size(), prefix) != 0) break;
    if (k.size() == prefix.size() || k[prefix.size()] == '.') {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

StateTree StateTree::clone() const {
  StateTree copy;
  copy.source_ = source_;
  for (const auto& [key, value] : entries_) {
    if (const auto* t = std::get_if<at::Tensor>(&value)) {
      copy.entries_.emplace(key, t->defined() ? t->detach().clone() : at::Tensor());
    } else {
      copy.entries_.emplace(key, value);
    }
  }
  return copy;
}

std::string StateTree::digest() const {
  io::Sha256 sha;
  auto put_string = [&](const std::string& s) {
    uint64_t n = s.size();
    sha.update(&n, sizeof n);
    sha.update(s.data(), s.size());
  };
  for (const auto& [key, value] : entries_) {
    put_string(key);
    if (const auto* t = std::get_if<at::Tensor>(&value)) {
      if (!t->defined()) {
        put_string("undefined");
        continue;
      }
      at::Tensor c = t->detach().to(at::kCPU).contiguous();
      put_string(std::string(c10::toString(c.scalar_type())));
      for (int64_t d : c.sizes()) sha.update(&d, sizeof d);
      put_string("data");
      sha.update(c.data_ptr(), c.nbytes());
    } else if (const auto* j = std::get_if<nlohmann::json>(&value)) {
      put_string("json");
      put_string(j->dump());
    } else {
      const ObjectRef& o = std::get<ObjectRef>(value);
      put_string("object");
      put_string(o ? describe(*o).dump() : "null");
    }
  }
  return sha.hex_digest();
}

StateWriter::StateWriter(StateTree& tree, std::string prefix)
    : tree_(&tree), prefix_(std::move(prefix)) {}

StateWriter StateWriter::child(std::string_view name) const {
  return StateWriter(*tree_, join_key(prefix_, name));
}

void StateWriter::write(std::string_view key, const at::Tensor& tensor) {
  tree_->set(join_key(prefix_, key), tensor);
}

void StateWriter::write(std::string_view key, nlohmann::json value) {
  tree_->set(join_key(prefix_, key), std::move(value));
}

void StateWriter::write_object(std::string_view key, ObjectRef object) {
  tree_->set(join_key(prefix_, key), std::move(object));
}

StateReader::StateReader(const StateTree& tree, std::string prefix)
    : tree_(&tree), prefix_(std::move(prefix)) {}

StateReader StateReader::child(std::string_view name) const {
  return StateReader(*tree_, join_key(prefix_, name));
}

bool StateReader::has(std::string_view key) const {
  return tree_->contains(join_key(prefix_, key));
}

bool StateReader::has_child(std::string_view name) const {
  std::string p = join_key(prefix_, name);
  auto it = tree_->entries().lower_bound(p);
  if (it == tree_->entries().end()) return false;
  const std::string& k = it->first;
  return k.compare(0, p.size(), p) == 0 && (k.size() == p.size() || k[p.size()] == '.');
}

void StateReader::fail(std::string_view key, const std::string& what) const {
  std::string where = tree_->source().empty() ? "state" : "checkpoint '" + tree_->source() + "'";
  throw InvalidArgument(where + ": '" + join_key(prefix_, key) + "': " + what);
}

void StateReader::type_error(std::string_view key, const char* expected) const {
  fail(key, std::string("expected ") + expected);
}

const StateValue& StateReader::value(std::string_view key) const {
  const StateValue* v = tree_->find(join_key(prefix_, key));
  if (!v) fail(key, "missing");
  return *v;
}

const at::Tensor& StateReader::tensor(std::string_view key) const {
  const auto* t = std::get_if<at::Tensor>(&value(key));
  if (!t) type_error(key, "a tensor");
  return *t;
}

void StateReader::copy_into(std::string_view key, const at::Tensor& dst) const {
  const at::Tensor& src = tensor(key);
  if (src.sizes() != dst.sizes()) {
    fail(key, "shape " + c10::str(src.sizes()) + " does not fit " + c10::str(dst.sizes()));
  }
  at::NoGradGuard no_grad;
  const int64_t n = src.numel();
  if (n == 0) return;
  if (!src.is_contiguous() || !dst.is_contiguous() || !src.device().is_cpu()) {
    dst.copy_(src);
    if (src.is_contiguous() && src.device().is_cpu()) tree_->release(src.data_ptr(), src.nbytes());
    return;
  }
  constexpr int64_t kSliceBytes = int64_t{16} << 20;
  const int64_t element = int64_t(src.element_size());
  const int64_t step = std::max<int64_t>(1, kSliceBytes / element);
  at::Tensor s = src.view({n});
  at::Tensor d = dst.view({n});
  const auto* bytes = static_cast<const uint8_t*>(src.data_ptr());
  for (int64_t i = 0; i < n; i += step) {
    const int64_t len = std::min(step, n - i);
    d.narrow(0, i, len).copy_(s.narrow(0, i, len));
    tree_->release(bytes + i * element, size_t(len * element));
  }
}

at::Tensor StateReader::copy_out(std::string_view key) const {
  return copy_out(key, tensor(key).options());
}

at::Tensor StateReader::copy_out(std::string_view key, const at::TensorOptions& options) const {
  at::Tensor out = at::empty(tensor(key).sizes(), options);
  copy_into(key, out);
  return out;
}

const nlohmann::json& StateReader::json(std::string_view key) const {
  const auto* j = std::get_if<nlohmann::json>(&value(key));
  if (!j) type_error(key, "a value");
  return *j;
}

const ObjectRef& StateReader::object(std::string_view key) const {
  const auto* o = std::get_if<ObjectRef>(&value(key));
  if (!o) type_error(key, "an object reference");
  return *o;
}

// ------------------------------------------------------------ LoadTransaction

void LoadTransaction::load_later(Stateful& component, const StateReader& reader) {
  unstaged_.push_back({&component, reader});
}

void LoadTransaction::then(std::function<void()> step) {
  if (step) steps_.push_back(std::move(step));
}

void LoadTransaction::commit() {
  std::vector<StateTree> backups;
  backups.reserve(unstaged_.size());
  for (const Unstaged& u : unstaged_) {
    StateTree saved;
    StateWriter w(saved);
    u.component->save_state(w);
    backups.push_back(saved.clone());
    try {
      u.component->load_state(u.reader);
    } catch (...) {
      // Put back this one and every one loaded before it; nothing staged has
      // changed yet.
      for (size_t i = backups.size(); i-- > 0;) unstaged_[i].component->load_state(StateReader(backups[i]));
      throw;
    }
  }
  for (auto& step : steps_) step();
}

void load_staged(Stateful& component, const StateReader& reader) {
  LoadTransaction tx;
  component.stage_load(reader, tx);
  tx.commit();
}

}  // namespace continua
