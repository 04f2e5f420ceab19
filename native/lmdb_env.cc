#include "lmdb_env.h"

#include <cerrno>

#include "record_codec.h"

namespace ds::lmdb {

Status ToStatus(std::string_view what, int rc) {
  std::string msg(what);
  msg += ": ";
  msg += mdb_strerror(rc);
  switch (rc) {
    case ENOSPC:
    case EDQUOT:
    case MDB_MAP_FULL:
      return Status::NoSpace(std::move(msg));
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return Status::Corruption(std::move(msg));
    case MDB_BAD_VALSIZE:
      return Status::InvalidArgument(std::move(msg));
    default:
      return Status::IoError(std::move(msg));
  }
}

int OpenDbs(MDB_txn* txn, bool create, Dbs* dbs) {
  const unsigned flags = create ? MDB_CREATE : 0;
  int rc = mdb_dbi_open(txn, kStreamsDb, flags, &dbs->streams);
  if (rc == 0) rc = mdb_dbi_open(txn, kProducersDb, flags, &dbs->producers);
  if (rc == 0) rc = mdb_dbi_open(txn, kMetaDb, flags, &dbs->meta);
  if (rc != 0) return rc;
  rc = mdb_dbi_open(txn, kWalDb, flags, &dbs->wal);
  dbs->has_wal = rc == 0;
  if (rc != 0 && !(rc == MDB_NOTFOUND && !create)) return rc;
  rc = mdb_dbi_open(txn, kCrcDb, flags, &dbs->crc);
  dbs->has_crc = rc == 0;
  if (rc != 0 && !(rc == MDB_NOTFOUND && !create)) return rc;
  rc = mdb_dbi_open(txn, kSyncedDb, flags, &dbs->synced);
  dbs->has_synced = rc == 0;
  if (rc != 0 && !(rc == MDB_NOTFOUND && !create)) return rc;
  rc = mdb_dbi_open(txn, kSubscriptionsDb, flags, &dbs->subscriptions);
  if (rc == 0) rc = mdb_dbi_open(txn, kSubscriptionLinksDb, flags, &dbs->subscription_links);
  dbs->has_subscriptions = rc == 0;
  if (rc != 0 && !(rc == MDB_NOTFOUND && !create)) return rc;
  // Format 5's `inline` database: never created (format 6 keeps inline
  // bytes in the records); opened when present, for the upgrade and for
  // verify and backup of a directory no format 6 server has opened yet.
  rc = mdb_dbi_open(txn, kInlineDb, 0, &dbs->inline_bytes);
  dbs->has_inline = rc == 0;
  if (rc == MDB_NOTFOUND) return 0;
  return rc;
}

namespace {

// The record's value, decoded, with its inline bytes copied out (a put may
// move the page the value lies in). MDB_NOTFOUND if there is no record.
int GetRecord(MDB_txn* txn, const Dbs& dbs, const std::string& key, StreamRecord* record,
              std::string* inline_bytes) {
  MDB_val k = Val(key), v;
  int rc = mdb_get(txn, dbs.streams, &k, &v);
  if (rc != 0) return rc;
  std::string_view view;
  if (!DecodeStreamRecord(View(v), record, &view).ok()) return MDB_CORRUPTED;
  inline_bytes->assign(view);
  return 0;
}

int PutRecord(MDB_txn* txn, const Dbs& dbs, const std::string& key, const StreamRecord& record,
              std::string_view inline_bytes) {
  const std::string value = EncodeStreamRecord(record, inline_bytes);
  MDB_val k = Val(key), v = Val(value);
  return mdb_put(txn, dbs.streams, &k, &v, 0);
}

}  // namespace

int AppendInline(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t expected_len,
                 std::string_view bytes) {
  const std::string key = StreamKey(stream_id);
  StreamRecord record;
  std::string value;
  int rc = GetRecord(txn, dbs, key, &record, &value);
  if (rc == MDB_NOTFOUND) return 0;  // erased in this transaction: nothing to keep
  if (rc != 0) return rc;
  if (value.size() != expected_len) return MDB_CORRUPTED;
  value.append(bytes);
  return PutRecord(txn, dbs, key, record, value);
}

int TruncateInline(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t len) {
  const std::string key = StreamKey(stream_id);
  StreamRecord record;
  std::string value;
  int rc = GetRecord(txn, dbs, key, &record, &value);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  if (value.size() <= len) return 0;
  value.resize(static_cast<size_t>(len));
  return PutRecord(txn, dbs, key, record, value);
}

int GetInline(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, std::string_view* out) {
  *out = {};
  const std::string key = StreamKey(stream_id);
  MDB_val k = Val(key), v;
  // A format 5 directory not yet upgraded (verify, backup): its own database.
  int rc = mdb_get(txn, dbs.has_inline ? dbs.inline_bytes : dbs.streams, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  if (dbs.has_inline) {
    *out = View(v);
    return 0;
  }
  StreamRecord record;
  return DecodeStreamRecord(View(v), &record, out).ok() ? 0 : MDB_CORRUPTED;
}

int ReadInlineSizes(MDB_txn* txn, const Dbs& dbs, std::vector<std::pair<uint64_t, uint64_t>>* out) {
  out->clear();
  Cursor cursor;
  int rc = cursor.Open(txn, dbs.has_inline ? dbs.inline_bytes : dbs.streams);
  if (rc != 0) return rc;
  MDB_val k, v;
  for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    uint64_t id = 0;
    if (!ParseStreamKey(View(k), &id)) return MDB_CORRUPTED;
    if (dbs.has_inline) {
      out->emplace_back(id, v.mv_size);
      continue;
    }
    StreamRecord record;
    std::string_view inline_bytes;
    if (!DecodeStreamRecord(View(v), &record, &inline_bytes).ok()) return MDB_CORRUPTED;
    if (!inline_bytes.empty()) out->emplace_back(id, inline_bytes.size());
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int MoveInlineIntoRecords(MDB_txn* txn, Dbs* dbs, uint64_t* moved) {
  *moved = 0;
  if (!dbs->has_inline) return 0;
  {
    Cursor cursor;
    int rc = cursor.Open(txn, dbs->inline_bytes);
    if (rc != 0) return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
      const std::string key(View(k));
      const std::string bytes(View(v));  // the put below may move this page
      StreamRecord record;
      std::string old;
      int err = GetRecord(txn, *dbs, key, &record, &old);
      if (err == MDB_NOTFOUND) continue;  // a value without a record: dropped with the database
      if (err != 0) return err;
      err = PutRecord(txn, *dbs, key, record, bytes);
      if (err != 0) return err;
      ++*moved;
    }
    if (rc != MDB_NOTFOUND) return rc;
  }
  int rc = mdb_drop(txn, dbs->inline_bytes, 1);  // delete the database itself
  if (rc != 0) return rc;
  dbs->has_inline = false;
  return 0;
}

int PutSynced(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, const SyncedCheckpoint& cp) {
  if (!dbs.has_synced) return 0;
  const std::string key = StreamKey(stream_id);
  char value[12];
  for (int i = 0; i < 8; ++i) value[i] = static_cast<char>(cp.tail >> (8 * i));
  for (int i = 0; i < 4; ++i) value[8 + i] = static_cast<char>(cp.crc >> (8 * i));
  MDB_val k = Val(key), v = Val(std::string_view(value, 12));
  return mdb_put(txn, dbs.synced, &k, &v, 0);
}

int DeleteSynced(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id) {
  if (!dbs.has_synced) return 0;
  const std::string key = StreamKey(stream_id);
  MDB_val k = Val(key);
  int rc = mdb_del(txn, dbs.synced, &k, nullptr);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int ReadSynced(MDB_txn* txn, const Dbs& dbs, std::vector<std::pair<uint64_t, SyncedCheckpoint>>* out) {
  if (!dbs.has_synced) return 0;
  Cursor cursor;
  int rc = cursor.Open(txn, dbs.synced);
  if (rc != 0) return rc;
  MDB_val k, v;
  for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    uint64_t id = 0;
    if (!ParseStreamKey(View(k), &id) || v.mv_size != 12) return MDB_CORRUPTED;
    const auto* b = static_cast<const unsigned char*>(v.mv_data);
    SyncedCheckpoint cp;
    for (int i = 0; i < 8; ++i) cp.tail |= static_cast<uint64_t>(b[i]) << (8 * i);
    for (int i = 0; i < 4; ++i) cp.crc |= static_cast<uint32_t>(b[8 + i]) << (8 * i);
    out->emplace_back(id, cp);
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

std::string CrcKey(uint64_t stream_id, uint64_t block) {
  std::string key = StreamKey(stream_id);
  key += StreamKey(block);  // the same 8-byte big-endian spelling
  return key;
}

int PutCrc(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t block, uint32_t crc) {
  const std::string key = CrcKey(stream_id, block);
  char value[4];
  for (int i = 0; i < 4; ++i) value[i] = static_cast<char>(crc >> (8 * i));
  MDB_val k = Val(key), v = Val(std::string_view(value, 4));
  return mdb_put(txn, dbs.crc, &k, &v, 0);
}

int GetCrcs(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t first, uint64_t last,
            std::vector<std::pair<uint64_t, uint32_t>>* out) {
  if (!dbs.has_crc) return 0;
  Cursor cursor;
  int rc = cursor.Open(txn, dbs.crc);
  if (rc != 0) return rc;
  const std::string from = CrcKey(stream_id, first);
  MDB_val k = Val(from), v;
  for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    uint64_t id = 0, block = 0;
    const std::string_view key = View(k);
    if (key.size() != 16 || !ParseStreamKey(key.substr(0, 8), &id) || id != stream_id) break;
    if (!ParseStreamKey(key.substr(8), &block) || block > last) break;
    if (v.mv_size != 4) return MDB_CORRUPTED;
    const auto* b = static_cast<const unsigned char*>(v.mv_data);
    out->emplace_back(block, static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
                                 static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24);
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int DeleteCrcs(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t first, uint64_t last) {
  if (!dbs.has_crc || first >= last) return 0;
  Cursor cursor;
  int rc = cursor.Open(txn, dbs.crc);
  if (rc != 0) return rc;
  const std::string from = CrcKey(stream_id, first);
  for (;;) {
    MDB_val k = Val(from), v;
    rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return rc;
    uint64_t id = 0, block = 0;
    const std::string_view key = View(k);
    if (key.size() != 16 || !ParseStreamKey(key.substr(0, 8), &id) || id != stream_id) return 0;
    if (!ParseStreamKey(key.substr(8), &block) || block >= last) return 0;
    rc = mdb_cursor_del(cursor.get(), 0);
    if (rc != 0) return rc;
  }
}

std::string WalKey(uint64_t commit_seq, uint64_t stream_id, uint64_t position) {
  std::string key = StreamKey(commit_seq);  // the same 8-byte big-endian spelling
  key += StreamKey(stream_id);
  key += StreamKey(position);
  return key;
}

bool ParseWalKey(std::string_view key, uint64_t* commit_seq, uint64_t* stream_id, uint64_t* position) {
  *commit_seq = 0;
  if (key.size() == 24) {
    if (!ParseStreamKey(key.substr(0, 8), commit_seq)) return false;
    key.remove_prefix(8);
  }
  if (key.size() != 16) return false;
  return ParseStreamKey(key.substr(0, 8), stream_id) && ParseStreamKey(key.substr(8), position);
}

int GetU64(MDB_txn* txn, MDB_dbi dbi, std::string_view key, uint64_t* value, bool* found) {
  MDB_val k = Val(key), v;
  int rc = mdb_get(txn, dbi, &k, &v);
  *found = false;
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  if (!DecodeU64(View(v), value)) return MDB_CORRUPTED;
  *found = true;
  return 0;
}

int PutU64(MDB_txn* txn, MDB_dbi dbi, std::string_view key, uint64_t value) {
  const std::string encoded = EncodeU64(value);
  MDB_val k = Val(key), v = Val(encoded);
  return mdb_put(txn, dbi, &k, &v, 0);
}

int PutStream(MDB_txn* txn, const Dbs& dbs, const StreamRecord& record, const InlineAppend* append) {
  const std::string key = StreamKey(record.id);
  // The inline bytes live in the record's value: keep them (a stream's
  // bytes never go away while it exists), plus what `append` adds.
  MDB_val k = Val(key), v;
  int rc = mdb_get(txn, dbs.streams, &k, &v);
  std::string_view stored;
  if (rc == 0) {
    StreamRecord old;
    if (!DecodeStreamRecord(View(v), &old, &stored).ok()) return MDB_CORRUPTED;
  } else if (rc != MDB_NOTFOUND) {
    return rc;
  }
  if (append == nullptr || append->bytes.empty()) {
    if (stored.empty()) return PutRecord(txn, dbs, key, record, {});
    return PutRecord(txn, dbs, key, record, std::string(stored));  // copied: the put may move the page
  }
  if (stored.size() != append->expected_len) return MDB_CORRUPTED;  // a commit never skips bytes
  std::string value;
  value.reserve(stored.size() + append->bytes.size());
  value.append(stored);
  value.append(append->bytes);
  return PutRecord(txn, dbs, key, record, value);
}

int PutProducer(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, const ProducerRecord& producer) {
  const std::string key = ProducerKey(stream_id, producer.producer_id);
  MDB_val k = Val(key), v;
  if (!IsProducerBucketKey(key)) {
    const std::string value = EncodeProducerRecord(producer);
    v = Val(value);
    return mdb_put(txn, dbs.producers, &k, &v, 0);
  }
  // A long id: read-modify-write its bucket.
  std::vector<ProducerRecord> bucket;
  int rc = mdb_get(txn, dbs.producers, &k, &v);
  if (rc == 0) {
    if (!DecodeProducerBucket(View(v), &bucket).ok()) return MDB_CORRUPTED;
  } else if (rc != MDB_NOTFOUND) {
    return rc;
  }
  bool replaced = false;
  for (ProducerRecord& p : bucket) {
    if (p.producer_id == producer.producer_id) {
      p = producer;
      replaced = true;
    }
  }
  if (!replaced) bucket.push_back(producer);
  const std::string value = EncodeProducerBucket(bucket);
  v = Val(value);
  return mdb_put(txn, dbs.producers, &k, &v, 0);
}

int EraseStream(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id) {
  const std::string key = StreamKey(stream_id);
  MDB_val k = Val(key);
  int rc = mdb_del(txn, dbs.streams, &k, nullptr);
  if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  rc = DeleteCrcs(txn, dbs, stream_id, 0, UINT64_MAX);
  if (rc == 0) rc = DeleteSynced(txn, dbs, stream_id);
  if (rc == 0 && dbs.has_inline) {
    // A format 5 copy (backup of a directory not yet upgraded).
    rc = mdb_del(txn, dbs.inline_bytes, &k, nullptr);
    if (rc == MDB_NOTFOUND) rc = 0;
  }
  if (rc != 0) return rc;
  // Producer keys start with the stream key: delete the whole range,
  // seeking afresh after each delete (a stream has few producers).
  Cursor cursor;
  rc = cursor.Open(txn, dbs.producers);
  if (rc != 0) return rc;
  for (;;) {
    MDB_val pk = Val(key), pv;
    rc = mdb_cursor_get(cursor.get(), &pk, &pv, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return rc;
    if (View(pk).substr(0, key.size()) != key) return 0;
    rc = mdb_cursor_del(cursor.get(), 0);
    if (rc != 0) return rc;
  }
}

Status ReadStreams(MDB_txn* txn, const Dbs& dbs, std::vector<RecoveredStream>* streams,
                   std::vector<std::string>* orphans) {
  streams->clear();
  orphans->clear();
  {
    Cursor cursor;
    int rc = cursor.Open(txn, dbs.streams);
    if (rc != 0) return ToStatus("open streams cursor", rc);
    MDB_val k, v;
    for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
      uint64_t id = 0;
      RecoveredStream s;
      if (!ParseStreamKey(View(k), &id)) {
        return Status::Corruption("streams.db: malformed stream key of " + std::to_string(k.mv_size) +
                                  " bytes");
      }
      Status st = DecodeStreamRecord(View(v), &s.record);
      if (!st.ok()) return Status::Corruption("stream " + std::to_string(id) + ": " + st.message());
      if (s.record.id != id) {
        return Status::Corruption("streams.db: record under key " + std::to_string(id) +
                                  " names stream " + std::to_string(s.record.id));
      }
      streams->push_back(std::move(s));
    }
    if (rc != MDB_NOTFOUND) return ToStatus("read streams", rc);
  }
  Cursor cursor;
  int rc = cursor.Open(txn, dbs.producers);
  if (rc != 0) return ToStatus("open producers cursor", rc);
  // Both databases are in id order: merge them.
  size_t i = 0;
  MDB_val k, v;
  for (rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    uint64_t id = 0;
    if (!ParseProducerKeyStream(View(k), &id)) {
      orphans->emplace_back(View(k));
      continue;
    }
    while (i < streams->size() && (*streams)[i].record.id < id) ++i;
    if (i == streams->size() || (*streams)[i].record.id != id) {
      orphans->emplace_back(View(k));
      continue;
    }
    std::vector<ProducerRecord>& out = (*streams)[i].producers;
    Status st;
    if (IsProducerBucketKey(View(k))) {
      std::vector<ProducerRecord> bucket;
      st = DecodeProducerBucket(View(v), &bucket);
      for (ProducerRecord& p : bucket) out.push_back(std::move(p));
    } else {
      ProducerRecord p;
      st = DecodeProducerRecord(View(v), &p);
      out.push_back(std::move(p));
    }
    if (!st.ok()) return Status::Corruption("stream " + std::to_string(id) + " producer: " + st.message());
  }
  if (rc != MDB_NOTFOUND) return ToStatus("read producers", rc);
  return Status::OK();
}

Status ReadStream(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, bool* found,
                  StreamRecord* record, std::vector<ProducerRecord>* producers) {
  *found = false;
  producers->clear();
  const std::string key = StreamKey(stream_id);
  MDB_val k = Val(key), v;
  int rc = mdb_get(txn, dbs.streams, &k, &v);
  if (rc == MDB_NOTFOUND) return Status::OK();
  if (rc != 0) return ToStatus("read stream " + std::to_string(stream_id), rc);
  Status st = DecodeStreamRecord(View(v), record);
  if (!st.ok()) return Status::Corruption("stream " + std::to_string(stream_id) + ": " + st.message());
  *found = true;
  // Its producer keys start with its stream key.
  Cursor cursor;
  rc = cursor.Open(txn, dbs.producers);
  if (rc != 0) return ToStatus("open producers cursor", rc);
  MDB_val pk = Val(key), pv;
  for (rc = mdb_cursor_get(cursor.get(), &pk, &pv, MDB_SET_RANGE);
       rc == 0 && View(pk).substr(0, key.size()) == key;
       rc = mdb_cursor_get(cursor.get(), &pk, &pv, MDB_NEXT)) {
    if (IsProducerBucketKey(View(pk))) {
      std::vector<ProducerRecord> bucket;
      st = DecodeProducerBucket(View(pv), &bucket);
      for (ProducerRecord& p : bucket) producers->push_back(std::move(p));
    } else {
      ProducerRecord p;
      st = DecodeProducerRecord(View(pv), &p);
      producers->push_back(std::move(p));
    }
    if (!st.ok()) {
      return Status::Corruption("stream " + std::to_string(stream_id) + " producer: " + st.message());
    }
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return ToStatus("read producers", rc);
  return Status::OK();
}

}  // namespace ds::lmdb
