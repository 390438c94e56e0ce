// Access control with real processes and real credentials: the main socket's
// mode and group, SO_PEERCRED checks (a probe that becomes uid 65534 with and
// without the socket's group), the read-only socket refusing every changing
// RPC of VmService (found from the service descriptor, so RPCs added later
// are covered), the TLS listener requiring a client certificate from the
// configured CA (certificates made by openssl during the test), the `peer`
// recorded in events and history, and health + reflection on every listener.
#include <arpa/inet.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr gid_t kUsersGid = 100;  // Debian's "users": the socket group here.
constexpr uid_t kNobody = 65534;  // Debian's "nobody" / "nogroup".

struct RawResult {
  grpc::Status status;
  std::string data;  // Every response message, concatenated.
};

// Calls any method with one serialized request message, whatever its kind
// (unary or streaming: on the wire they are all "messages, then a status"),
// and reads every response until the status.
RawResult CallRaw(const std::shared_ptr<grpc::Channel>& channel,
                  const std::string& method, const std::string& request) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  RawResult result;
  auto call = stub.PrepareCall(&context, method, &cq);
  void* tag = nullptr;
  bool ok = false;
  auto done = [&] { return cq.Next(&tag, &ok) && ok; };
  call->StartCall(nullptr);
  if (done()) {
    grpc::Slice slice(request);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, nullptr);
    if (done()) {
      call->WritesDone(nullptr);
      done();
    }
    while (true) {
      grpc::ByteBuffer response;
      call->Read(&response, nullptr);
      if (!done()) break;
      std::vector<grpc::Slice> slices;
      (void)response.Dump(&slices);
      for (const grpc::Slice& s : slices) {
        result.data.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
  }
  call->Finish(&result.status, nullptr);
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

std::shared_ptr<grpc::Channel> UnixChannel(const std::string& path) {
  return grpc::CreateChannel("unix:" + path,
                             grpc::InsecureChannelCredentials());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A free TCP port on 127.0.0.1 (bound, then released for vmms).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// One column of the first row of `sql` on vmms.db ("" when no row).
std::string QueryOne(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      if (text != nullptr) out = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "/dev/kvm cannot be opened";
    }
    // uid 65534 must reach the sockets: TempDir makes its directory 0700.
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir_.path() + "/state").c_str(), 0755), 0);
    MakeCertificates();
    tls_port_ = FreePort();
    ro_socket_ = dir_.path() + "/ro.sock";
    // umask 0 for vmms: the socket files must still get exactly their modes.
    mode_t old_umask = umask(0);
    vmms_ = std::make_unique<VmmsInstance>(
        dir_.path() + "/state",
        std::vector<std::string>{
            "--socket-group", "users", "--readonly-socket", ro_socket_,
            "--tls-listen", absl::StrCat("127.0.0.1:", tls_port_), "--tls-cert",
            Cert("server.pem"), "--tls-key", Cert("server.key"),
            "--tls-client-ca", Cert("ca.pem")});
    absl::Status started = vmms_->Start();
    umask(old_umask);
    ASSERT_TRUE(started.ok()) << started << "\n" << vmms_->Log();
  }

  std::string Cert(const std::string& name) {
    return dir_.path() + "/certs/" + name;
  }

  // A CA, a server certificate for 127.0.0.1, a client certificate from that
  // CA and one from another CA, with openssl (EC keys: fast).
  void MakeCertificates() {
    const std::string script = absl::StrCat(R"sh(
set -e
mkdir -p certs && cd certs
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
ca() { key "$1.key"; openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 1 -subj "/CN=$1"; }
sign() {  # name subject ca [extfile]
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial \
    -out "$1.pem" -days 1 ${4:+-extfile "$4"}
}
ca ca
ca rogue-ca
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
sign server /CN=localhost ca server.ext
sign client "/O=hvstack-test/CN=orchestrator" ca
sign rogue "/CN=intruder" rogue-ca
)sh");
    absl::StatusOr<CommandResult> r = RunCommand(
        {"/bin/sh", "-c", absl::StrCat("cd ", dir_.path(), " && ", script)});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << "openssl (Debian package openssl) failed:\n"
                               << r->err;
  }

  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& client) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadFile(Cert("ca.pem"));
    if (!client.empty()) {
      options.pem_private_key = ReadFile(Cert(client + ".key"));
      options.pem_cert_chain = ReadFile(Cert(client + ".pem"));
    }
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", tls_port_),
                               grpc::SslCredentials(options));
  }

  // access_probe as `uid` (with gid = uid and `groups`); returns "<code>
  // <message>".
  std::string Probe(uid_t uid, const std::string& groups,
                    const std::string& verb, const std::string& name) {
    absl::StatusOr<CommandResult> r =
        RunCommand({Runfile("tests/integration/access_probe"),
                    vmms_->socket_path(), absl::StrCat(uid), absl::StrCat(uid),
                    groups, verb, name, Runfile("guest/hello.elf")});
    if (!r.ok()) return r.status().ToString();
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return r->out;
  }

  // The events of `vm`, from `vmctl --json events`.
  std::vector<nlohmann::json> Events(const std::string& vm) {
    std::vector<nlohmann::json> events;
    absl::StatusOr<CommandResult> r = vmms_->Vmctl({"--json", "events"});
    if (!r.ok()) return events;
    for (absl::string_view line : absl::StrSplit(r->out, '\n')) {
      if (line.empty()) continue;
      nlohmann::json event = nlohmann::json::parse(line);
      if (event.value("vmName", "") == vm) events.push_back(event);
    }
    return events;
  }

  std::string Db() { return vmms_->state_dir() + "/vmms.db"; }

  TempDir dir_;
  int tls_port_ = 0;
  std::string ro_socket_;
  std::unique_ptr<VmmsInstance> vmms_;
};

TEST_F(AccessTest, SocketsHaveExactlyTheirModeAndGroupEvenWithUmaskZero) {
  struct stat main_socket {};
  ASSERT_EQ(stat(vmms_->socket_path().c_str(), &main_socket), 0);
  EXPECT_TRUE(S_ISSOCK(main_socket.st_mode));
  EXPECT_EQ(main_socket.st_mode & 07777, 0660u);
  EXPECT_EQ(main_socket.st_gid, kUsersGid);
  struct stat ro {};
  ASSERT_EQ(stat(ro_socket_.c_str(), &ro), 0);
  EXPECT_EQ(ro.st_mode & 07777, 0666u);
}

TEST_F(AccessTest, RootChangesAndIsRecordedAsThePeer) {
  ASSERT_EQ(vmms_
                ->Vmctl({"create", "web1", "--kernel",
                         Runfile("guest/hello.elf"), "--memory", "16"})
                ->exit_code,
            0);
  std::vector<nlohmann::json> events = Events("web1");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].value("peer", ""), HasSubstr("uid=0 pid="));
  EXPECT_THAT(events[0].value("peer", ""), HasSubstr("(vmctl)"));
  EXPECT_THAT(QueryOne(Db(), "SELECT peer FROM vm_state_history"),
              HasSubstr("(vmctl)"));
  EXPECT_THAT(vmms_->Log(), HasSubstr("CreateVm VM 'web1' by uid=0 pid="));
}

TEST_F(AccessTest, OtherUsersOnlyReadAndAreToldWhy) {
  ASSERT_EQ(vmms_
                ->Vmctl({"create", "web1", "--kernel",
                         Runfile("guest/hello.elf"), "--memory", "16"})
                ->exit_code,
            0);
  // The file mode keeps uid 65534 (not in group users) out altogether.
  EXPECT_THAT(Probe(kNobody, "-", "get", "web1"), HasSubstr("14 "));
  // With the file opened up, SO_PEERCRED is the second line of defence:
  // reading is allowed, changing is not, and the message says why.
  ASSERT_EQ(chmod(vmms_->socket_path().c_str(), 0666), 0);
  EXPECT_EQ(Probe(kNobody, "-", "get", "web1").substr(0, 2), "0 ");
  std::string denied = Probe(kNobody, "-", "create", "web2");
  EXPECT_EQ(denied.substr(0, 2), "7 ") << denied;  // PERMISSION_DENIED
  EXPECT_THAT(denied, HasSubstr("uid 65534"));
  EXPECT_THAT(denied, HasSubstr("CreateVm VM 'web2'"));
  EXPECT_THAT(denied, HasSubstr("group users (gid 100)"));
  EXPECT_TRUE(Events("web2").empty());
  EXPECT_THAT(vmms_->Log(), HasSubstr("refused: uid 65534"));
  EXPECT_EQ(QueryOne(Db(), "SELECT COUNT(*) FROM vms"), "1");
}

TEST_F(AccessTest, MembersOfTheSocketGroupMayChange) {
  std::string created = Probe(kNobody, absl::StrCat(kUsersGid), "create", "g1");
  EXPECT_EQ(created.substr(0, 2), "0 ") << created;
  std::vector<nlohmann::json> events = Events("g1");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].value("peer", ""), HasSubstr("uid=65534 pid="));
  EXPECT_THAT(events[0].value("peer", ""), HasSubstr("(access_probe)"));
}

bool IsRead(const std::string& method) {
  for (const char* prefix : {"Get", "List", "Watch", "Stream"}) {
    if (absl::StartsWith(method, prefix)) return true;
  }
  return false;
}

TEST_F(AccessTest, ReadOnlySocketRefusesEveryChangingRpc) {
  ASSERT_EQ(vmms_
                ->Vmctl({"create", "web1", "--kernel",
                         Runfile("guest/hello.elf"), "--memory", "16"})
                ->exit_code,
            0);
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "hvstack.v1.VmService");
  ASSERT_NE(service, nullptr);
  auto channel = UnixChannel(ro_socket_);
  int changing = 0;
  for (int i = 0; i < service->method_count(); ++i) {
    const google::protobuf::MethodDescriptor* method = service->method(i);
    // A request naming the existing VM where the request has a `name`.
    std::string request;
    if (const auto* name = method->input_type()->FindFieldByName("name");
        name != nullptr && name->number() == 1 &&
        name->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      request = std::string("\x0a\x04web1", 6);
    }
    RawResult r = CallRaw(
        channel, absl::StrCat("/", service->full_name(), "/", method->name()),
        request);
    if (IsRead(method->name())) {
      EXPECT_NE(r.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
          << method->name() << ": " << r.status.error_message();
    } else if (r.status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      // Declared but not served yet: it cannot change anything. Once it is
      // served it must ask AccessControl like the others.
      continue;
    } else {
      ++changing;
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
          << method->name()
          << " on the read-only socket: " << r.status.error_message();
      EXPECT_THAT(r.status.error_message(), HasSubstr("read-only socket"))
          << method->name();
      EXPECT_THAT(r.status.error_message(), HasSubstr(method->name()));
    }
  }
  EXPECT_GE(changing,
            5);  // CreateVm, StartVm, StopVm, DeleteVm, AttachConsole.
  // Nothing happened to web1: still Off, one event (its creation).
  EXPECT_EQ(QueryOne(Db(), "SELECT state FROM vms WHERE name = 'web1'"), "off");
  EXPECT_EQ(Events("web1").size(), 1u);
}

TEST_F(AccessTest, TlsListenerRequiresAClientCertificateFromTheCa) {
  auto stub = hvstack::v1::VmService::NewStub(TlsChannel("client"));
  hvstack::v1::CreateVmRequest request;
  request.set_name("tls1");
  request.mutable_config()->set_vcpus(1);
  request.mutable_config()->set_memory_mib(16);
  request.mutable_config()->set_kernel_path(Runfile("guest/hello.elf"));
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    hvstack::v1::Vm vm;
    grpc::Status s = stub->CreateVm(&context, request, &vm);
    ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message() << "\n"
                        << vmms_->Log();
  }
  std::vector<nlohmann::json> events = Events("tls1");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].value("peer", ""), HasSubstr("tls subject="));
  EXPECT_THAT(events[0].value("peer", ""), HasSubstr("CN=orchestrator"));

  // No client certificate, or one from another CA: no connection at all.
  for (const std::string& client : {std::string(), std::string("rogue")}) {
    auto refused = hvstack::v1::VmService::NewStub(TlsChannel(client));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    hvstack::v1::ListVmsRequest list;
    hvstack::v1::ListVmsResponse response;
    grpc::Status s = refused->ListVms(&context, list, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << "client certificate '" << client << "': " << s.error_message();
    EXPECT_EQ(response.vms_size(), 0);
  }
}

TEST_F(AccessTest, HealthAndReflectionAnswerOnEveryListener) {
  std::vector<std::pair<std::string, std::shared_ptr<grpc::Channel>>>
      listeners = {{"main", UnixChannel(vmms_->socket_path())},
                   {"read-only", UnixChannel(ro_socket_)},
                   {"tls", TlsChannel("client")}};
  for (const auto& [name, channel] : listeners) {
    // HealthCheckRequest{service = ""} is empty; the response is
    // {status = SERVING (1)}: field 1, varint 1.
    RawResult health = CallRaw(channel, "/grpc.health.v1.Health/Check", "");
    EXPECT_TRUE(health.status.ok())
        << name << ": " << health.status.error_message();
    EXPECT_EQ(health.data, std::string("\x08\x01", 2)) << name;
    // ServerReflectionRequest{list_services = "*"} (field 7).
    RawResult reflection = CallRaw(channel,
                                   "/grpc.reflection.v1alpha.ServerReflection/"
                                   "ServerReflectionInfo",
                                   std::string("\x3a\x01*", 3));
    EXPECT_TRUE(reflection.status.ok())
        << name << ": " << reflection.status.error_message();
    EXPECT_THAT(reflection.data, HasSubstr("hvstack.v1.VmService")) << name;
    EXPECT_THAT(reflection.data, HasSubstr("grpc.health.v1.Health")) << name;
  }
}

TEST(AccessFlagsTest, BadSocketGroupAndTlsFilesStopVmmsWithTheReason) {
  TempDir dir;
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  } cases[] = {
      {{"--socket-group", "no-such-group-4242"},
       "--socket-group no-such-group-4242: no such group"},
      {{"--tls-listen", "127.0.0.1:0", "--tls-cert", "/etc/hostname",
        "--tls-key", "/etc/hostname"},
       "--tls-listen needs --tls-cert, --tls-key and --tls-client-ca"},
      {{"--readonly-socket", "/nonexistent-dir/ro.sock"},
       "/nonexistent-dir/ro.sock"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {Runfile("vmms/vmms"), "--state-dir",
                                     dir.path() + "/s", "--vmwp",
                                     Runfile("vmwp/vmwp")};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    absl::StatusOr<CommandResult> r = RunCommand(argv, {}, absl::Seconds(20));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NE(r->exit_code, 0) << c.expected;
    EXPECT_THAT(r->err, HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace hvtest
