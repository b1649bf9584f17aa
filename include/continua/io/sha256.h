// Incremental SHA-256, used for digests of training state (`state_digest`)
// and anywhere a cryptographic hash of bytes is needed. Backed by OpenSSL.
//
// Usage:
//   continua::io::Sha256 h;
//   h.update("ab", 2);
//   h.update("c", 1);
//   std::string hex = h.hex_digest();  // "ba7816bf...f20015ad"
//
// Contract: hex_digest() finishes the hash and returns 64 lowercase hex
// digits; after it the object is reset and can hash a new message. Throws
// std::runtime_error only if OpenSSL itself fails (out of memory).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace continua::io {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;

  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }

  // The 32-byte digest; resets the object.
  std::array<uint8_t, 32> digest();
  // The digest as 64 lowercase hex digits; resets the object.
  std::string hex_digest();

 private:
  void* ctx_;  // EVP_MD_CTX*, kept opaque so OpenSSL headers stay private
};

// One-shot helper.
std::string sha256_hex(const void* data, size_t n);

}  // namespace continua::io
