// ds_powerloss_sim: a seeded power-loss simulator for the data_dir store.
//
//   ds_powerloss_sim [--seeds A-B | --seed S] [--mode always|interval|off|all]
//                    [--ops N] [--points N] [--variants N]
//                    [--crash K --variant V] [--keep DIR] [--known KIND,...] [--self-test] [--dump-log] [-v]
//
// For each seed and fsync mode: runs the workload (workload.h) with the
// recorder (recorder.cc, preloaded: the program re-executes itself with
// LD_PRELOAD set) logging every file operation under a fresh root; then for
// chosen crash points K and variants V builds the crash state (crash_state.h)
// in a fresh directory and checks it (oracle.h) in a child process, so a
// crash or hang of recovery is a finding too. Prints one line per violation
// with the command that replays it, and ends with "N passed, N failed"
// (N = crash states).
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "crash_state.h"
#include "file_util.h"
#include "oracle.h"
#include "self_test.h"
#include "workload.h"

using namespace dssim;

namespace {

struct Args {
  uint64_t seed_lo = 1, seed_hi = 1;
  std::vector<ds_fsync> modes{DS_FSYNC_ALWAYS, DS_FSYNC_INTERVAL, DS_FSYNC_OFF};
  int ops = 80;
  int points = 40;
  int variants = 4;
  int64_t crash = -1;
  int64_t variant = -1;
  std::string keep;
  // Violation kinds known to fail today under interval and off (issue 19
  // items 1-2): reported with their seeds, not counted as failures. Never
  // applied to fsync=always nor to backups.
  std::set<std::string> known_kinds;
  bool verbose = false;
  bool self_test = false;
  bool dump_log = false;  // with --crash: print the op log up to the point
};

const char* ModeName(ds_fsync m) {
  return m == DS_FSYNC_ALWAYS ? "always" : m == DS_FSYNC_INTERVAL ? "interval" : "off";
}

std::string TempRoot() {
  const char* t = getenv("DS_SIM_TMP");
  std::string base = t ? t : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  std::string tmpl = base + "/ds_sim.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    perror("mkdtemp");
    exit(2);
  }
  return buf.data();
}

// Runs check(i) for i in [0, n) in child processes, up to `batch` states per
// child (a fork of a sanitizer-instrumented process is not cheap), so that a
// crash or hang of recovery is a finding rather than the end of the run: the
// state in progress gets a violation and the rest go on in a new child.
std::vector<std::vector<Finding>> InChildren(size_t n, size_t batch,
                                             const std::function<std::vector<Finding>(size_t)>& check) {
  std::vector<std::vector<Finding>> out(n);
  size_t next = 0;
  while (next < n) {
    const size_t first = next, last = std::min(n, first + batch);
    int fds[2];
    if (pipe(fds) != 0) {
      out[next++].push_back({true, "harness", "pipe failed"});
      continue;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      // Recovery's own warnings go to stderr; keep them out of the report.
      if (!getenv("DS_SIM_STDERR")) (void)!freopen("/dev/null", "w", stderr);
      auto say = [&](const std::string& text) {
        size_t done = 0;
        while (done < text.size()) {
          ssize_t w = write(fds[1], text.data() + done, text.size() - done);
          if (w <= 0) _exit(3);
          done += static_cast<size_t>(w);
        }
      };
      for (size_t i = first; i < last; ++i) {
        say("S\t" + std::to_string(i) + "\n");
        std::string text;
        for (const Finding& f : check(i)) {
          text += (f.violation ? "V\t" : "N\t") + f.kind + "\t" + f.text + "\n";
        }
        say(text + "E\t" + std::to_string(i) + "\n");
      }
      _exit(0);
    }
    close(fds[1]);
    std::string text;
    char buf[65536];
    // Each state gets 60 s; a hang is killed and reported.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool hung = false;
    for (;;) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (left <= 0) {
        hung = true;
        break;
      }
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, left) <= 0) continue;
      ssize_t got = read(fds[0], buf, sizeof buf);
      if (got <= 0) break;
      text.append(buf, static_cast<size_t>(got));
      if (text.find("E\t") != std::string::npos) {
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      }
    }
    close(fds[0]);
    if (hung) kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    // Parse: S i, findings, E i.
    int64_t open_state = -1;
    size_t done_upto = first;
    for (size_t a = 0; a < text.size();) {
      size_t e = text.find('\n', a);
      if (e == std::string::npos) break;
      std::string line = text.substr(a, e - a);
      a = e + 1;
      size_t t1 = line.find('\t');
      if (t1 == std::string::npos) continue;
      if (line[0] == 'S') {
        open_state = std::stoll(line.substr(t1 + 1));
      } else if (line[0] == 'E') {
        done_upto = static_cast<size_t>(std::stoll(line.substr(t1 + 1))) + 1;
        open_state = -1;
      } else if (open_state >= 0) {
        size_t t2 = line.find('\t', t1 + 1);
        out[open_state].push_back({line[0] == 'V', line.substr(t1 + 1, t2 - t1 - 1), line.substr(t2 + 1)});
      }
    }
    if (done_upto < last) {
      // The child died or hung in state done_upto.
      std::string why = hung ? "no answer within 60 s"
                        : WIFSIGNALED(status) ? std::string("killed by signal ") + strsignal(WTERMSIG(status))
                                              : "exited with status " + std::to_string(WEXITSTATUS(status));
      out[done_upto].push_back({true, hung ? "recovery-hang" : "recovery-crash", why});
      next = done_upto + 1;
    } else {
      next = last;
    }
  }
  return out;
}

// Crash points: the start and the end (after the clean close), points
// just before and after each sync, each acknowledgement, and random ones.
std::vector<uint64_t> ChoosePoints(const OpLog& log, uint64_t seed, int n) {
  std::mt19937_64 rng(seed * 7919 + 13);
  std::vector<uint64_t> interesting;
  for (uint64_t i = 0; i < log.size(); ++i) {
    OpKind k = log[i].kind;
    if (k == OpKind::kFsync || k == OpKind::kSyncfs) {
      interesting.push_back(i);
      interesting.push_back(i + 1);
    } else if (k == OpKind::kAck && log[i].data[0] == 'a') {
      interesting.push_back(i + 1);
    }
  }
  std::set<uint64_t> out{0, log.size()};
  for (int i = 0; static_cast<int>(out.size()) < n && i < 4 * n; ++i) {
    if (i % 2 == 0 && !interesting.empty()) out.insert(interesting[rng() % interesting.size()]);
    else out.insert(rng() % (log.size() + 1));
  }
  return {out.begin(), out.end()};
}

struct Totals {
  uint64_t states = 0, failed = 0, known = 0, notes = 0;
};

void RunOne(const Args& args, const Recorder& rec, const std::string& self, uint64_t seed,
            ds_fsync mode, Totals* totals) {
  auto t0 = std::chrono::steady_clock::now();
  const std::string root = TempRoot();
  rec.reset(root.c_str());
  Model model;
  WorkloadConfig wc;
  wc.seed = seed;
  wc.fsync = mode;
  wc.operations = args.ops;
  std::string error;
  if (!RunWorkload(wc, root + "/data", rec, &model, &error)) {
    printf("seed %llu %s: workload failed: %s\n", (unsigned long long)seed, ModeName(mode), error.c_str());
    ++totals->failed;
    ds::RemoveTree(root);
    return;
  }
  OpLog log = std::move(*rec.log());
  rec.reset(root.c_str());
  ds::RemoveTree(root);

  if (args.dump_log) {
    static const char* kNames[] = {"open", "close", "write", "truncate", "fallocate", "fsync", "syncfs",
                                   "rename", "unlink", "mkdir", "rmdir", "link", "mark"};
    uint64_t end = args.crash >= 0 ? std::min<uint64_t>(args.crash, log.size()) : log.size();
    for (uint64_t i = 0; i < end; ++i) {
      const Op& op = log[i];
      printf("%6llu %-9s fd=%-3d %s%s%s off=%llu len=%llu cover=%llu flags=%#x%s%s\n", (unsigned long long)i,
             kNames[static_cast<int>(op.kind)], op.fd, op.path.c_str(), op.path2.empty() ? "" : " -> ",
             op.path2.c_str(), (unsigned long long)op.off, (unsigned long long)op.len,
             (unsigned long long)op.cover, op.flags, op.kind == OpKind::kAck ? " " : "",
             op.kind == OpKind::kAck ? op.data.c_str() : "");
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> states;
  if (args.crash >= 0) {
    states.push_back({static_cast<uint64_t>(args.crash), static_cast<uint64_t>(std::max<int64_t>(args.variant, 0))});
  } else {
    for (uint64_t p : ChoosePoints(log, seed ^ mode, args.points))
      for (int v = 0; v < args.variants; ++v) states.push_back({p, static_cast<uint64_t>(v)});
  }
  // Only the ordered-write assumption LMDB documents for MDB_NOSYNC.
  const std::string ordered = mode == DS_FSYNC_ALWAYS ? "" : "data/streams.db/";
  uint64_t violations = 0, known = 0, notes = 0;
  std::map<std::string, uint64_t> kinds;
  const size_t batch = getenv("DS_SIM_BATCH") ? std::stoul(getenv("DS_SIM_BATCH")) : 16;
  std::vector<std::vector<Finding>> results = InChildren(states.size(), batch, [&](size_t i) {
    auto [point, variant] = states[i];
    std::string dir = args.keep.empty() ? TempRoot() : args.keep;
    if (!args.keep.empty()) {
      ds::RemoveTree(dir);
      mkdir(dir.c_str(), 0755);
    }
    CrashStats cs;
    std::string err;
    std::vector<Finding> found;
    if (!MaterializeCrashState(log, {point, variant}, seed, ordered, dir, &cs, &err)) {
      found.push_back({true, "harness", "materialize: " + err});
    } else {
      found = CheckCrashState(model, point, dir);
    }
    if (args.keep.empty()) ds::RemoveTree(dir);
    return found;
  });
  for (size_t i = 0; i < states.size(); ++i) {
    auto [point, variant] = states[i];
    const std::vector<Finding>& found = results[i];
    bool bad = false, bad_known = false;
    std::set<std::string> state_kinds;  // counted once per state
    for (const Finding& f : found) {
      // Known kinds: the data directory under interval/off only.
      const bool is_known = f.violation && mode != DS_FSYNC_ALWAYS &&
                            args.known_kinds.count(f.kind) > 0 && f.text.rfind("data ", 0) == 0;
      if (f.violation) {
        (is_known ? bad_known : bad) = true;
        state_kinds.insert(is_known ? f.kind + " (known)" : f.kind);
      } else {
        ++notes;
      }
      if (f.violation || args.verbose || args.crash >= 0) {
        printf("  %s seed %llu %s crash %llu variant %llu: %s: %s\n",
               is_known ? "KNOWN" : f.violation ? "VIOLATION" : "note",
               (unsigned long long)seed, ModeName(mode), (unsigned long long)point,
               (unsigned long long)variant, f.kind.c_str(), f.text.c_str());
      }
    }
    for (const std::string& k : state_kinds) ++kinds[k];
    if (bad) ++violations;
    else if (bad_known) ++known;
    if (bad || bad_known) {
      printf("    replay: %s --seed %llu --mode %s --ops %d --crash %llu --variant %llu --keep /tmp/ds_sim_state\n",
             self.c_str(), (unsigned long long)seed, ModeName(mode), args.ops,
             (unsigned long long)point, (unsigned long long)variant);
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("seed %llu fsync=%s: segment %llu B, retention %llu B; %zu workload events (%zu streams, %zu backups), %zu file ops, %zu crash states, "
         "%llu violations, %llu known, %llu notes (%.1f s)\n",
         (unsigned long long)seed, ModeName(mode), (unsigned long long)model.segment_bytes,
         (unsigned long long)model.retention_bytes, model.events.size(), model.streams.size(),
         model.backups.size(), log.size(), states.size(), (unsigned long long)violations,
         (unsigned long long)known, (unsigned long long)notes, secs);
  for (auto& [k, n] : kinds) printf("    %s: %llu states\n", k.c_str(), (unsigned long long)n);
  if (model.unexpected_answers) {
    printf("    workload: %llu unexpected answers (see stderr)\n", (unsigned long long)model.unexpected_answers);
  }
  totals->states += states.size();
  totals->notes += notes;
  totals->failed += violations;
  totals->known += known;
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (s == "--seed") {
      a->seed_lo = a->seed_hi = std::stoull(next());
    } else if (s == "--seeds") {
      std::string v = next();
      size_t dash = v.find('-');
      a->seed_lo = std::stoull(v.substr(0, dash));
      a->seed_hi = dash == std::string::npos ? a->seed_lo : std::stoull(v.substr(dash + 1));
    } else if (s == "--mode") {
      std::string v = next();
      if (v == "all") continue;
      if (v == "always") a->modes = {DS_FSYNC_ALWAYS};
      else if (v == "interval") a->modes = {DS_FSYNC_INTERVAL};
      else if (v == "off") a->modes = {DS_FSYNC_OFF};
      else return false;
    } else if (s == "--ops") {
      a->ops = std::stoi(next());
    } else if (s == "--points") {
      a->points = std::stoi(next());
    } else if (s == "--variants") {
      a->variants = std::stoi(next());
    } else if (s == "--crash") {
      a->crash = std::stoll(next());
    } else if (s == "--variant") {
      a->variant = std::stoll(next());
    } else if (s == "--keep") {
      a->keep = next();
    } else if (s == "--known") {
      std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t c = v.find(',', p);
        if (c == std::string::npos) c = v.size();
        a->known_kinds.insert(v.substr(p, c - p));
        p = c + 1;
      }
    } else if (s == "--dump-log") {
      a->dump_log = true;
    } else if (s == "--self-test") {
      a->self_test = true;
    } else if (s == "-v") {
      a->verbose = true;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    fprintf(stderr, "usage: see the comment at the top of tests/sim/sim_main.cc\n");
    return 2;
  }
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 2;
  exe[n] = '\0';
  std::string self = exe;
  if (args.self_test && RunSelfTest() != 0) {
    printf("0 passed, 1 failed\n");
    return 1;
  }
  Recorder rec;
  rec.set_active = reinterpret_cast<dsrec_set_active_fn>(dlsym(RTLD_DEFAULT, "dsrec_set_active"));
  rec.ack = reinterpret_cast<dsrec_ack_fn>(dlsym(RTLD_DEFAULT, "dsrec_ack"));
  rec.log = reinterpret_cast<dsrec_log_fn>(dlsym(RTLD_DEFAULT, "dsrec_log"));
  rec.reset = reinterpret_cast<dsrec_reset_fn>(dlsym(RTLD_DEFAULT, "dsrec_reset"));
  if (!rec.set_active || !rec.ack || !rec.log || !rec.reset) {
    if (getenv("DS_SIM_REEXEC")) {
      fprintf(stderr, "ds_powerloss_sim: the recorder is not preloaded\n");
      return 2;
    }
    std::string lib = self.substr(0, self.rfind('/')) + "/libdsrec.so";
    setenv("LD_PRELOAD", lib.c_str(), 1);
    // Under ASan (the tests/native build) the recorder comes first in the
    // library list, ahead of the sanitizer runtime; its calls go on to
    // ASan's interceptors, which is all ASan needs.
    std::string asan = getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "";
    setenv("ASAN_OPTIONS", (asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0").c_str(), 1);
    setenv("DS_SIM_REEXEC", "1", 1);
    execv(exe, argv);
    perror("execv");
    return 2;
  }
  unsetenv("LD_PRELOAD");  // children of ours (none expected) need not record
  auto t0 = std::chrono::steady_clock::now();
  Totals totals;
  for (uint64_t seed = args.seed_lo; seed <= args.seed_hi; ++seed) {
    for (ds_fsync mode : args.modes) RunOne(args, rec, self, seed, mode, &totals);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("ds_powerloss_sim: %llu crash states checked in %.1f s; %llu documented-loss notes",
         (unsigned long long)totals.states, secs, (unsigned long long)totals.notes);
  if (totals.known) {
    printf("; %llu states with KNOWN violations (--known, listed above; fsync=interval/off only)",
           (unsigned long long)totals.known);
  }
  printf("\n%llu passed, %llu failed\n", (unsigned long long)(totals.states - totals.failed - totals.known),
         (unsigned long long)totals.failed);
  return totals.failed == 0 ? 0 : 1;
}
