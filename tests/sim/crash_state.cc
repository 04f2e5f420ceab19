// Crash states from an op log (see crash_state.h).
//
// Two passes. The first replays the namespace of ops [0, point) to give each
// operation its file (an inode of our own numbering: a name that is unlinked
// and created again is a new file) and finds what the syncs before the
// crash made durable. The second picks which of the other operations reached
// the disk, applies the picked ones in order to an in-memory file tree that
// starts from the empty root, and writes that tree out.
#include "crash_state.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

namespace dssim {
namespace {

struct Effect {
  enum Type { kWrite, kTruncate, kExtend, kCreate, kUnlink, kRename };
  Effect(Type t, uint64_t i, int n, int p = -1, int p2 = -1)
      : type(t), idx(i), inode(n), parent(p), parent2(p2) {}
  Type type;
  uint64_t idx;           // position in the log
  int inode = -1;         // the file written, created, unlinked or renamed
  int parent = -1, parent2 = -1;
  std::string name, name2;
  bool dir = false;       // kCreate: mkdir
  uint64_t off = 0, len = 0;
  const std::string* data = nullptr;
  bool dsync = false;     // written through an O_DSYNC/O_SYNC descriptor
  bool required = false;
};

std::pair<std::string, std::string> Split(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

struct Node {
  bool dir = false;
  bool exists = false;  // its creation reached the disk
  bool ordered = false; // under ordered_prefix
  std::string data;
  std::map<std::string, int> entries;
};

void ApplyData(Node& n, const Effect& e, uint64_t from, uint64_t to) {
  // Bytes [from, to) of write `e` (absolute file offsets).
  if (n.data.size() < to) n.data.resize(to, '\0');
  std::copy(e.data->begin() + static_cast<std::ptrdiff_t>(from - e.off),
            e.data->begin() + static_cast<std::ptrdiff_t>(to - e.off),
            n.data.begin() + static_cast<std::ptrdiff_t>(from));
}

bool WriteOut(const std::vector<Node>& nodes, int inode, const std::string& path,
              std::string* error) {
  const Node& n = nodes[inode];
  if (n.dir) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      *error = "mkdir " + path + ": " + strerror(errno);
      return false;
    }
    for (const auto& [name, child] : n.entries) {
      if (!WriteOut(nodes, child, path + "/" + name, error)) return false;
    }
    return true;
  }
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0) {
    *error = "create " + path + ": " + strerror(errno);
    return false;
  }
  size_t done = 0;
  while (done < n.data.size()) {
    ssize_t w = ::write(fd, n.data.data() + done, n.data.size() - done);
    if (w <= 0) {
      *error = "write " + path + ": " + strerror(errno);
      ::close(fd);
      return false;
    }
    done += static_cast<size_t>(w);
  }
  ::close(fd);
  return true;
}

}  // namespace

bool MaterializeCrashState(const OpLog& log, const CrashChoice& choice, uint64_t seed,
                           const std::string& ordered_prefix, const std::string& dest,
                           CrashStats* stats, std::string* error) {
  // ---- Pass 1: files, effects and what the syncs covered.
  std::vector<Node> nodes(1);
  nodes[0].dir = true;
  nodes[0].exists = true;
  std::unordered_map<std::string, int> names{{"", 0}};
  struct Fd {
    int inode;
    bool dsync;
  };
  std::unordered_map<int, Fd> fds;
  std::vector<uint64_t> sync_cover(1, 0);
  uint64_t syncfs_cover = 0;
  std::vector<Effect> effects;

  auto new_node = [&](bool dir, const std::string& path) {
    nodes.emplace_back();
    nodes.back().dir = dir;
    nodes.back().ordered = !ordered_prefix.empty() && path.rfind(ordered_prefix, 0) == 0;
    sync_cover.push_back(0);
    return static_cast<int>(nodes.size() - 1);
  };
  auto lookup = [&](const std::string& path) {
    auto it = names.find(path);
    return it == names.end() ? -1 : it->second;
  };

  const uint64_t end = std::min<uint64_t>(choice.point, log.size());
  for (uint64_t i = 0; i < end; ++i) {
    const Op& op = log[i];
    if (op.path.rfind("\x01", 0) == 0 || op.path2.rfind("\x01", 0) == 0) {
      *error = "op " + std::to_string(i) + " crosses the watched root";
      return false;
    }
    switch (op.kind) {
      case OpKind::kOpen: {
        int inode = lookup(op.path);
        if (inode < 0) {
          auto [dir, name] = Split(op.path);
          int parent = lookup(dir);
          if (!(op.flags & O_CREAT) || parent < 0) {
            // Opened without our having seen it created: only possible
            // for a path that does not exist (the open then failed and was
            // not logged) — a recorder bug if it happens.
            *error = "op " + std::to_string(i) + ": open of unknown " + op.path;
            return false;
          }
          inode = new_node(false, op.path);
          names[op.path] = inode;
          Effect e{Effect::kCreate, i, inode, parent};
          e.name = name;
          effects.push_back(e);
        } else if ((op.flags & O_TRUNC) && !nodes[inode].dir) {
          Effect e{Effect::kTruncate, i, inode};
          e.len = 0;
          effects.push_back(e);
        }
        fds[op.fd] = {inode, (op.flags & (O_DSYNC | O_SYNC)) != 0};
        break;
      }
      case OpKind::kClose:
        fds.erase(op.fd);
        break;
      case OpKind::kWrite:
      case OpKind::kTruncate:
      case OpKind::kFallocate: {
        int inode;
        bool dsync = false;
        if (op.fd >= 0) {
          auto it = fds.find(op.fd);
          if (it == fds.end()) {
            *error = "op " + std::to_string(i) + ": unknown descriptor";
            return false;
          }
          inode = it->second.inode;
          dsync = it->second.dsync;
        } else {
          inode = lookup(op.path);
          if (inode < 0) break;
        }
        Effect e{Effect::kWrite, i, inode};
        e.dsync = dsync;
        if (op.kind == OpKind::kWrite) {
          if (op.data.rfind("\x01", 0) == 0) {
            *error = "op " + std::to_string(i) + ": copy source was unreadable";
            return false;
          }
          e.off = op.off;
          e.len = op.data.size();
          e.data = &op.data;
        } else if (op.kind == OpKind::kTruncate) {
          e.type = Effect::kTruncate;
          e.len = op.len;
        } else {
          if (op.flags & FALLOC_FL_KEEP_SIZE) break;  // no visible change
          e.type = Effect::kExtend;
          e.len = op.off + op.len;
        }
        effects.push_back(e);
        break;
      }
      case OpKind::kFsync: {
        auto it = fds.find(op.fd);
        if (it != fds.end()) {
          uint64_t& c = sync_cover[it->second.inode];
          c = std::max(c, op.cover);
        }
        break;
      }
      case OpKind::kSyncfs:
        syncfs_cover = std::max(syncfs_cover, op.cover);
        break;
      case OpKind::kMkdir: {
        auto [dir, name] = Split(op.path);
        int parent = lookup(dir);
        if (parent < 0) break;
        int inode = new_node(true, op.path);
        names[op.path] = inode;
        Effect e{Effect::kCreate, i, inode, parent};
        e.name = name;
        e.dir = true;
        effects.push_back(e);
        break;
      }
      case OpKind::kUnlink:
      case OpKind::kRmdir: {
        int inode = lookup(op.path);
        if (inode < 0) break;
        auto [dir, name] = Split(op.path);
        Effect e{Effect::kUnlink, i, inode, lookup(dir)};
        e.name = name;
        effects.push_back(e);
        names.erase(op.path);
        break;
      }
      case OpKind::kRename:
      case OpKind::kLink: {
        int inode = lookup(op.path);
        if (inode < 0) break;
        auto [dir, name] = Split(op.path);
        auto [dir2, name2] = Split(op.path2);
        if (op.kind == OpKind::kLink) {
          Effect e{Effect::kCreate, i, inode, lookup(dir2)};
          e.name = name2;
          effects.push_back(e);
        } else {
          Effect e{Effect::kRename, i, inode, lookup(dir), lookup(dir2)};
          e.name = name;
          e.name2 = name2;
          effects.push_back(e);
          names.erase(op.path);
          // A renamed directory takes its descendants' names along.
          std::vector<std::pair<std::string, int>> moved;
          const std::string pre = op.path + "/";
          for (auto it = names.begin(); it != names.end();) {
            if (it->first.rfind(pre, 0) == 0) {
              moved.emplace_back(op.path2 + "/" + it->first.substr(pre.size()), it->second);
              it = names.erase(it);
            } else {
              ++it;
            }
          }
          for (auto& m : moved) names[m.first] = m.second;
          // LMDB's ordering (a prefix of the unsynced writes survives) is a
          // property of its files, not of the name they were created under:
          // the store builds a new environment in streams.db.new/ and
          // renames it into place.
          if (!ordered_prefix.empty()) {
            for (auto& m : moved) {
              if (m.first.rfind(ordered_prefix, 0) == 0) nodes[m.second].ordered = true;
            }
          }
        }
        if (!ordered_prefix.empty() && op.path2.rfind(ordered_prefix, 0) == 0) nodes[inode].ordered = true;
        names[op.path2] = inode;
        break;
      }
      case OpKind::kAck:
        break;
    }
  }

  // What the syncs made durable: a file's data and size up to its last
  // fsync/fdatasync (writes that completed before it began), every O_DSYNC
  // write, a name once its directory is fsynced, everything before a syncfs.
  for (Effect& e : effects) {
    uint64_t cover = syncfs_cover;
    switch (e.type) {
      case Effect::kWrite:
      case Effect::kTruncate:
      case Effect::kExtend:
        cover = std::max(cover, sync_cover[e.inode]);
        e.required = e.dsync || e.idx < cover;
        break;
      case Effect::kCreate:
      case Effect::kUnlink:
        if (e.parent >= 0) cover = std::max(cover, sync_cover[e.parent]);
        e.required = e.idx < cover;
        break;
      case Effect::kRename:
        if (e.parent >= 0) cover = std::max(cover, sync_cover[e.parent]);
        if (e.parent2 >= 0) cover = std::max(cover, sync_cover[e.parent2]);
        e.required = e.idx < cover;
        break;
    }
  }

  // ---- Pass 2: what else reached the disk.
  std::mt19937_64 rng(seed ^ (choice.point * 0x9E3779B97F4A7C15ull) ^ (choice.variant << 48));
  auto R = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  // Variant styles: 0 synced only, 1 everything, then random mixes: each
  // unsynced write kept, dropped or torn (512-byte sectors or 4 KiB pages,
  // any subset: reordering), names kept as any subset or as a prefix.
  const uint64_t style = choice.variant < 2 ? 0 : R(3);
  const int keep_pct = choice.variant < 2 ? 0 : style == 2 ? 90 : 50;
  const bool names_prefix = style == 1;
  uint64_t names_cut = ~0ull;
  {
    uint64_t optional_names = 0;
    for (const Effect& e : effects)
      if (!e.required && (e.type == Effect::kCreate || e.type == Effect::kUnlink || e.type == Effect::kRename))
        ++optional_names;
    if (names_prefix) names_cut = R(optional_names + 1);
  }
  // Ordered files: per file, the unsynced writes kept are a prefix.
  std::unordered_map<int, uint64_t> ordered_cut, ordered_seen;
  if (choice.variant >= 2) {
    std::unordered_map<int, uint64_t> count;
    for (const Effect& e : effects)
      if (!e.required && nodes[e.inode].ordered &&
          (e.type == Effect::kWrite || e.type == Effect::kTruncate || e.type == Effect::kExtend))
        ++count[e.inode];
    for (auto& [inode, n] : count) ordered_cut[inode] = R(n + 1);
  }

  CrashStats st;
  uint64_t names_seen = 0;
  for (const Effect& e : effects) {
    bool data = e.type == Effect::kWrite || e.type == Effect::kTruncate || e.type == Effect::kExtend;
    bool keep = true, tear = false;
    if (e.required) {
      ++st.required;
    } else {
      ++st.optional;
      if (choice.variant == 0) {
        keep = false;
      } else if (choice.variant == 1) {
        keep = true;
      } else if (data && nodes[e.inode].ordered) {
        uint64_t n = ordered_seen[e.inode]++;
        uint64_t cut = ordered_cut[e.inode];
        keep = n < cut || (n == cut && e.type == Effect::kWrite && R(2) == 0);
        tear = n == cut && keep;
      } else if (data) {
        uint64_t dice = R(100);
        keep = dice < static_cast<uint64_t>(keep_pct);
        if (!keep && e.type == Effect::kWrite && dice < static_cast<uint64_t>(keep_pct) + 25) {
          keep = tear = true;
        }
      } else if (names_prefix) {
        keep = names_seen++ < names_cut;
      } else {
        keep = R(100) < static_cast<uint64_t>(keep_pct);
      }
      if (!keep) ++st.dropped;
      else if (tear) ++st.torn;
      else ++st.kept;
    }
    if (!keep) continue;
    Node& n = nodes[e.inode];
    switch (e.type) {
      case Effect::kWrite:
        if (!tear) {
          ApplyData(n, e, e.off, e.off + e.len);
        } else {
          const uint64_t unit = R(2) ? 512 : 4096;
          for (uint64_t a = e.off; a < e.off + e.len;) {
            uint64_t b = std::min(e.off + e.len, (a / unit + 1) * unit);
            if (R(2)) ApplyData(n, e, a, b);
            a = b;
          }
        }
        break;
      case Effect::kTruncate:
        n.data.resize(e.len, '\0');
        break;
      case Effect::kExtend:
        if (n.data.size() < e.len) n.data.resize(e.len, '\0');
        break;
      case Effect::kCreate:
        if (e.parent >= 0 && nodes[e.parent].exists) {
          nodes[e.parent].entries[e.name] = e.inode;
          n.exists = true;
        }
        break;
      case Effect::kUnlink:
        if (e.parent >= 0) {
          auto it = nodes[e.parent].entries.find(e.name);
          if (it != nodes[e.parent].entries.end() && it->second == e.inode) nodes[e.parent].entries.erase(it);
        }
        break;
      case Effect::kRename:
        if (e.parent >= 0 && e.parent2 >= 0 && nodes[e.parent2].exists) {
          auto it = nodes[e.parent].entries.find(e.name);
          if (it != nodes[e.parent].entries.end() && it->second == e.inode) {
            nodes[e.parent].entries.erase(it);
            nodes[e.parent2].entries[e.name2] = e.inode;
          }
        }
        break;
    }
  }
  if (stats) *stats = st;
  return WriteOut(nodes, 0, dest, error);
}

}  // namespace dssim
