// Stress tests of the cache across processes: 8 concurrent writers, and writers
// killed with SIGKILL at random moments. Uses the cache_writer helper binary.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "cache/cache.hpp"
#include "tests/cache/cache_test_util.hpp"

using namespace ffnjit;
using namespace ffnjit::cache;
using namespace ffnjit::cache::testing;
namespace fs = std::filesystem;

namespace {


// Starts `args`; with `out_fd`, the child's stdout goes to a pipe read through it.
pid_t spawn(const std::vector<std::string>& args, int* out_fd = nullptr) {
  int fds[2] = {-1, -1};
  if (out_fd && ::pipe(fds) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    if (out_fd) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
    }
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (out_fd) {
    ::close(fds[1]);
    *out_fd = fds[0];
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Checks that every record present is complete and exactly what its writer wrote;
// returns the (writer, index) pairs of the binaries found.
std::set<std::pair<int, int>> check_contents(Cache& c) {
  static const std::regex name_re(".*_w([0-9]+)-([0-9]+)$");
  static const std::regex layer_re("layer([0-9]+):w([0-9]+):.*");
  std::set<std::pair<int, int>> seen;
  auto bins = c.list_binaries();
  REQUIRE(bins);
  for (const auto& b : *bins) {
    std::smatch m;
    REQUIRE(std::regex_match(b.kernel_name, m, name_re));
    int w = std::stoi(m[1]), i = std::stoi(m[2]);
    BinaryRecord want = make_binary(w, i, h100(), i % 16 == 0 ? 40000 : 0);
    CHECK(b.key == want.key);
    CHECK(b.cubin == want.cubin);
    CHECK(b.ptx == want.ptx);
    CHECK(b.source == want.source);
    CHECK(b.resources == want.resources);
    CHECK(seen.insert({w, i}).second);
  }
  auto tuns = c.list_tunings();
  REQUIRE(tuns);
  std::set<std::pair<int, int>> tuned;
  for (const auto& t : *tuns) {
    std::smatch m;
    REQUIRE(std::regex_match(t.layer_signature, m, layer_re));
    int i = std::stoi(m[1]), w = std::stoi(m[2]);
    TuningRecord want = make_tuning(w, i);
    CHECK(t.winner == want.winner);
    CHECK(t.candidates == want.candidates);
    CHECK(t.winner_us == want.winner_us);
    CHECK(tuned.insert({w, i}).second);
  }
  // Each writer stores a binary, then its tuning record: at most one binary ahead.
  CHECK(tuned.size() <= seen.size());
  return seen;
}

}  // namespace

TEST_CASE("8 processes writing 500 records each at once: all present, readable, none duplicated") {
  TempDir t;
  const std::string db = (t.path / "cache.db").string();
  const int kWriters = 8, kRecords = 500;
  const std::string start_at = std::to_string(now_ms() + 300);
  std::vector<pid_t> pids;
  for (int w = 0; w < kWriters; ++w)
    pids.push_back(spawn(
        {FFNJIT_CACHE_WRITER, db, std::to_string(w), "0", std::to_string(kRecords), start_at}));
  for (pid_t p : pids) CHECK(wait_exit(p) == 0);

  auto c = Cache::open(db, {.read_only = true});
  REQUIRE(c);
  auto seen = check_contents(*c);
  CHECK(seen.size() == size_t(kWriters * kRecords));
  for (int w = 0; w < kWriters; ++w)
    for (int i = 0; i < kRecords; ++i) CHECK(seen.count({w, i}) == 1);
  CHECK(c->list_tunings()->size() == size_t(kWriters * kRecords));
  auto v = c->verify();
  REQUIRE(v);
  CHECK(v->integrity == "ok");
  CHECK(v->issues.empty());
}

TEST_CASE("writers killed with SIGKILL at random moments never leave a damaged cache") {
  TempDir t;
  const std::string db = (t.path / "cache.db").string();
  std::mt19937 rng(20261124);
  std::uniform_int_distribution<int> delay_us(0, 20000);
  size_t last_seen = 0;
  int grew = 0;
  for (int round = 0; round < 100; ++round) {
    INFO("round " << round);
    // Two writers at once, so kills also land while one waits for the other's lock.
    // Most rounds wait until both have the cache open, so that kills land among
    // writes however slow process start is (sanitizers); every 8th round kills
    // early, during open and (in round 0) while the file is being created.
    const bool early = round % 8 == 0;
    std::vector<pid_t> pids;
    std::vector<int> ready;
    for (int k = 0; k < 2; ++k) {
      int fd = -1;
      pids.push_back(spawn(
          {FFNJIT_CACHE_WRITER, db, std::to_string(2 * round + k), "0", "-1", "0", "ready"}, &fd));
      ready.push_back(fd);
    }
    for (int fd : ready) {
      char byte;
      if (!early) CHECK(::read(fd, &byte, 1) == 1);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng) / (early ? 4 : 1)));
    for (pid_t p : pids) ::kill(p, SIGKILL);
    for (pid_t p : pids) CHECK(wait_exit(p) == 128 + SIGKILL);
    for (int fd : ready) ::close(fd);
    if (!fs::exists(db)) continue;  // killed before it was created

    auto c = Cache::open(db);  // as the next user would: recovers the WAL
    INFO((c ? "" : c.error().message));
    REQUIRE(c);
    auto v = c->verify();
    REQUIRE(v);
    REQUIRE(v->integrity == "ok");
    for (const auto& i : v->issues) FAIL_CHECK(i.key << ": " << i.problem);
    size_t seen = check_contents(*c).size();
    CHECK(seen >= last_seen);  // committed records never disappear
    grew += seen > last_seen;
    last_seen = seen;
  }
  // The kills must have landed while writing, not only before the first commit.
  CHECK(grew > 20);
}
