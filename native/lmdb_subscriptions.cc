// Subscriptions in the LMDB environment (STORAGE_FORMAT.md,
// "Subscriptions"): `subscriptions` maps an id to its record,
// `subscription_links` maps id ‖ NUL ‖ stream path to the link's flags and
// cursor. Each write is one transaction, taken under the same lock as the
// stream commits and made durable by the same fsync policy.
#include <cstring>

#include "lmdb_store.h"

namespace ds {
namespace {

std::string LinkKey(std::string_view id, std::string_view path) {
  std::string key(id);
  key.push_back('\0');
  key.append(path);
  return key;
}

// Deletes every link of subscription `id`.
int EraseLinks(MDB_txn* txn, MDB_dbi dbi, std::string_view id) {
  const std::string prefix = LinkKey(id, "");
  std::vector<std::string> keys;
  {
    lmdb::Cursor cursor;
    int rc = cursor.Open(txn, dbi);
    if (rc != 0) return rc;
    MDB_val k = lmdb::Val(prefix), v;
    for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
      std::string_view key = lmdb::View(k);
      if (key.substr(0, prefix.size()) != prefix) break;
      keys.emplace_back(key);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  }
  for (const std::string& key : keys) {
    MDB_val k = lmdb::Val(key);
    int rc = mdb_del(txn, dbi, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  }
  return 0;
}

}  // namespace

Status LmdbStore::CommitSubscription(const SubscriptionWrite& w) {
  if (failed_.load()) return failure();
  if (!dbs_.has_subscriptions) return Status::NotSupported("streams.db has no subscriptions database");
  std::lock_guard lock(commit_mu_);
  Status s = Write("commit subscription", [&](MDB_txn* txn) -> int {
    if (w.erase) {
      MDB_val k = lmdb::Val(w.id);
      int rc = mdb_del(txn, dbs_.subscriptions, &k, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
      return EraseLinks(txn, dbs_.subscription_links, w.id);
    }
    MDB_val k = lmdb::Val(w.id), v = lmdb::Val(w.record);
    int rc = mdb_put(txn, dbs_.subscriptions, &k, &v, 0);
    if (rc != 0) return rc;
    for (const auto& [path, value] : w.put_links) {
      const std::string key = LinkKey(w.id, path);
      MDB_val lk = lmdb::Val(key), lv = lmdb::Val(value);
      rc = mdb_put(txn, dbs_.subscription_links, &lk, &lv, 0);
      if (rc != 0) return rc;
    }
    for (const std::string& path : w.erase_links) {
      const std::string key = LinkKey(w.id, path);
      MDB_val lk = lmdb::Val(key);
      rc = mdb_del(txn, dbs_.subscription_links, &lk, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
  });
  if (!s.ok() && s.code() != Status::Code::kNoSpace) Fail(s);
  return s;
}

Status LmdbStore::LoadSubscriptions(std::vector<StoredSubscription>* out) {
  out->clear();
  if (!dbs_.has_subscriptions) return Status::OK();
  std::shared_lock lock(env_mu_);
  lmdb::Txn txn;
  int rc = txn.Begin(env_.get(), MDB_RDONLY);
  if (rc != 0) return lmdb::ToStatus("read subscriptions", rc);
  {
    lmdb::Cursor cursor;
    rc = cursor.Open(txn.get(), dbs_.subscriptions);
    if (rc != 0) return lmdb::ToStatus("read subscriptions", rc);
    MDB_val k, v;
    for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
      out->push_back(StoredSubscription{std::string(lmdb::View(k)), std::string(lmdb::View(v)), {}});
    }
    if (rc != MDB_NOTFOUND) return lmdb::ToStatus("read subscriptions", rc);
  }
  // Links in key order: each subscription's are one run.
  lmdb::Cursor cursor;
  rc = cursor.Open(txn.get(), dbs_.subscription_links);
  if (rc != 0) return lmdb::ToStatus("read subscription links", rc);
  size_t at = 0;
  MDB_val k, v;
  for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    std::string_view key = lmdb::View(k);
    const size_t nul = key.find('\0');
    if (nul == std::string_view::npos) return Status::Corruption("subscription link key without a NUL");
    std::string_view id = key.substr(0, nul);
    while (at < out->size() && (*out)[at].id < id) ++at;
    if (at == out->size() || (*out)[at].id != id) continue;  // a link left by nothing
    (*out)[at].links.emplace_back(std::string(key.substr(nul + 1)), std::string(lmdb::View(v)));
  }
  if (rc != MDB_NOTFOUND) return lmdb::ToStatus("read subscription links", rc);
  return Status::OK();
}

}  // namespace ds
