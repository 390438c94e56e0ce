// vmctl's subcommands against an in-process fake VmService on a unix socket.
#include "cli/commands.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "cli/call_support.h"
#include "cli/exit_codes.h"

namespace vmctl {
namespace {

using ::testing::HasSubstr;

class FakeVmService final : public hvstack::v1::VmService::Service {
 public:
  grpc::Status CreateVm(grpc::ServerContext*,
                        const hvstack::v1::CreateVmRequest* request,
                        hvstack::v1::Vm* vm) override {
    last_create = *request;
    vm->set_name(request->name());
    *vm->mutable_config() = request->config();
    vm->set_state(hvstack::v1::VM_STATE_OFF);
    return grpc::Status::OK;
  }
  grpc::Status GetVm(grpc::ServerContext*,
                     const hvstack::v1::GetVmRequest* request,
                     hvstack::v1::Vm*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "VM '" + request->name() + "' not found");
  }
  grpc::Status StopVm(grpc::ServerContext*, const hvstack::v1::StopVmRequest*,
                      hvstack::v1::Vm*) override {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "VM 'a' is off; cannot stop it");
  }
  grpc::Status StreamConsole(
      grpc::ServerContext*, const hvstack::v1::StreamConsoleRequest* request,
      grpc::ServerWriter<hvstack::v1::ConsoleChunk>* writer) override {
    hvstack::v1::ConsoleChunk chunk;
    chunk.set_data(std::string("raw\0bytes\n", 10));
    writer->Write(chunk);
    chunk.set_data(request->follow() ? "followed\n" : "");
    writer->Write(chunk);
    return grpc::Status::OK;
  }

  // Echoes the input it gets until it has `expect` bytes, then ends.
  grpc::Status AttachConsole(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<hvstack::v1::ConsoleChunk,
                               hvstack::v1::AttachConsoleRequest>* stream)
      override {
    hvstack::v1::AttachConsoleRequest request;
    if (!stream->Read(&request)) return grpc::Status::OK;
    if (request.name() != "a")
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "VM not found");
    hvstack::v1::ConsoleChunk chunk;
    chunk.set_data("hello\n");
    stream->Write(chunk);
    std::string input = request.data();
    while (input.size() < 6 && stream->Read(&request)) input += request.data();
    chunk.set_data("got: " + input + "\n");
    stream->Write(chunk);
    chunk.clear_data();
    chunk.set_ended(true);
    stream->Write(chunk);
    while (stream->Read(&request)) {
    }
    return grpc::Status::OK;
  }

  grpc::Status UpdateVm(grpc::ServerContext*,
                        const hvstack::v1::UpdateVmRequest* request,
                        hvstack::v1::Vm* vm) override {
    last_update = *request;
    vm->set_name(request->name());
    *vm->mutable_config() = request->config();
    return grpc::Status::OK;
  }
  grpc::Status ShutdownVm(grpc::ServerContext*,
                          const hvstack::v1::ShutdownVmRequest* request,
                          hvstack::v1::Vm* vm) override {
    last_shutdown = *request;
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "VM 'a' was not shut down: the guest did not power "
                        "off within 2.5s; it keeps running");
  }
  grpc::Status GetVmStats(grpc::ServerContext*,
                          const hvstack::v1::GetVmStatsRequest* request,
                          hvstack::v1::VmStats* stats) override {
    stats->set_name(request->name());
    stats->set_state(hvstack::v1::VM_STATE_RUNNING);
    stats->mutable_uptime()->set_seconds(3);
    stats->set_worker_rss_bytes(3 << 20);
    auto* vp = stats->add_vps();
    vp->set_index(0);
    vp->set_cpu_time_ns(1500000000);
    vp->set_total_exits(7);
    (*vp->mutable_exits_by_reason())["port_io"] = 5;
    (*vp->mutable_exits_by_reason())["interrupted"] = 2;
    return grpc::Status::OK;
  }
  // A start that takes 2 s (a slow worker).
  grpc::Status StartVm(grpc::ServerContext*,
                       const hvstack::v1::StartVmRequest* request,
                       hvstack::v1::Vm* vm) override {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    vm->set_name(request->name());
    vm->set_state(hvstack::v1::VM_STATE_RUNNING);
    return grpc::Status::OK;
  }
  // vmms itself answering UNAVAILABLE: its worker did not answer.
  grpc::Status RebootVm(grpc::ServerContext*,
                        const hvstack::v1::RebootVmRequest* request,
                        hvstack::v1::Vm*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "VM '" + request->name() +
                            "' was not rebooted: worker at w.sock did not "
                            "answer: Deadline Exceeded");
  }
  hvstack::v1::UpdateVmRequest last_update;
  hvstack::v1::ShutdownVmRequest last_shutdown;
  hvstack::v1::CreateVmRequest last_create;
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vmctlXXXXXX";
    dir_ = ::mkdtemp(tmpl);
    socket_ = dir_ + "/vmms.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_,
                             grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }
  Session Connected(bool json = false) {
    return Connect(socket_, json, out_, err_);
  }

  std::string dir_;
  std::string socket_;
  FakeVmService service_;
  std::unique_ptr<grpc::Server> server_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(CommandsTest, CreateSendsAnAbsoluteKernelPathAndTheDefaults) {
  Session session = Connected();
  CreateArgs args;
  args.name = "web1";
  args.kernel = "guest/../guest/hello.elf";
  EXPECT_EQ(CreateCommand(session, args), 0);
  const auto& config = service_.last_create.config();
  EXPECT_EQ(config.kernel_path(),
            (std::filesystem::current_path() / "guest/hello.elf").string());
  EXPECT_EQ(config.memory_mib(), 256u);
  EXPECT_EQ(config.vcpus(), 1u);
  EXPECT_THAT(out_.str(), HasSubstr("name: web1\n"));
}

TEST_F(CommandsTest, JsonOutput) {
  Session session = Connected(/*json=*/true);
  CreateArgs args;
  args.name = "web1";
  args.kernel = "/k";
  EXPECT_EQ(CreateCommand(session, args), 0);
  EXPECT_THAT(out_.str(), HasSubstr("\"name\":\"web1\""));
}

TEST_F(CommandsTest, ErrorsPrintTheCodeAndMessageAndMapToExitCodes) {
  Session session = Connected();
  EXPECT_EQ(ShowCommand(session, "ghost"), 2);
  EXPECT_EQ(err_.str(), "vmctl: NOT_FOUND: VM 'ghost' not found\n");
  err_.str("");
  EXPECT_EQ(StopCommand(session, "a"), 3);
  EXPECT_THAT(err_.str(), HasSubstr("vmctl: FAILED_PRECONDITION: "));
  err_.str("");
  EXPECT_EQ(DeleteCommand(session, "a"), 6);  // UNIMPLEMENTED by the fake.
}

TEST_F(CommandsTest, RequestTimeoutReplacesEveryDefaultDeadline) {
  Session session = Connected();
  OverrideRequestTimeout(std::chrono::seconds(1));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(StartCommand(session, "a"),
            ExitCodeFor(grpc::StatusCode::DEADLINE_EXCEEDED));
  EXPECT_LT(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(1900));
  EXPECT_THAT(err_.str(), HasSubstr("vmctl: DEADLINE_EXCEEDED"));
  // The default (90 s for a call that waits on a worker) outlasts the start.
  OverrideRequestTimeout(std::nullopt);
  err_.str("");
  EXPECT_EQ(StartCommand(session, "a"), 0) << err_.str();
}

TEST_F(CommandsTest, UnreachableVmmsNamesTheSocket) {
  Session session = Connect(dir_ + "/nothing.sock", false, out_, err_);
  EXPECT_EQ(ListCommand(session), 5);
  EXPECT_THAT(err_.str(),
              HasSubstr("vmctl: UNAVAILABLE: cannot reach vmms at unix:" +
                        dir_ + "/nothing.sock"));
}

TEST_F(CommandsTest, UnavailableFromVmmsIsNotBlamedOnTheSocket) {
  Session session = Connected();
  EXPECT_EQ(RebootCommand(session, "a"), 5);
  EXPECT_EQ(err_.str(),
            "vmctl: UNAVAILABLE: VM 'a' was not rebooted: worker at w.sock "
            "did not answer: Deadline Exceeded\n");
}

TEST_F(CommandsTest, ConsoleWritesRawBytes) {
  Session session = Connected();
  EXPECT_EQ(ConsoleCommand(session, "a", /*follow=*/false), 0);
  EXPECT_EQ(out_.str(), std::string("raw\0bytes\n", 10));
}

TEST_F(CommandsTest, CreateSendsAnAbsoluteInitrdPath) {
  Session session = Connected();
  CreateArgs args;
  args.name = "web1";
  args.kernel = "/k";
  args.initrd = "images/../initrd.img";
  EXPECT_EQ(CreateCommand(session, args), 0);
  EXPECT_EQ(service_.last_create.config().initrd_path(),
            (std::filesystem::current_path() / "initrd.img").string());
  EXPECT_THAT(out_.str(), HasSubstr("initrd: /"));
}

TEST_F(CommandsTest, AttachedConsoleForwardsPipedInputAndEndsWithTheVm) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1],
                    "abc\x1d"
                    "de",
                    6),
            6);
  ::close(fds[1]);  // EOF ends the input, not the console
  Session session = Connected();
  session.in_fd = fds[0];
  EXPECT_EQ(ConsoleCommand(session, "a", /*follow=*/true), 0) << err_.str();
  // Not a terminal: Ctrl-] is data, not the escape.
  EXPECT_EQ(out_.str(),
            "hello\ngot: abc\x1d"
            "de\n");
  ::close(fds[0]);
}

TEST_F(CommandsTest, AttachedConsoleReportsErrors) {
  Session session = Connected();
  EXPECT_EQ(ConsoleCommand(session, "zz", /*follow=*/true), 2);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND"));
}

TEST_F(CommandsTest, UpdateSendsOnlyTheGivenFieldsInTheMask) {
  Session session = Connected();
  UpdateArgs args;
  args.memory_mib = 512;
  args.kernel = "k/../vmlinux";
  args.restart_policy = hvstack::v1::RESTART_POLICY_ON_FAILURE;
  EXPECT_EQ(UpdateCommand(session, "a", args), 0) << err_.str();
  EXPECT_THAT(
      service_.last_update.update_mask().paths(),
      ::testing::ElementsAre("memory_mib", "kernel_path", "restart_policy"));
  EXPECT_EQ(service_.last_update.config().kernel_path(),
            (std::filesystem::current_path() / "vmlinux").string());
  EXPECT_THAT(out_.str(), HasSubstr("restart_policy: on-failure"));
  EXPECT_EQ(AutostartCommand(session, "a", true), 0);
  EXPECT_THAT(service_.last_update.update_mask().paths(),
              ::testing::ElementsAre("autostart"));
  EXPECT_TRUE(service_.last_update.config().autostart());
  // Nothing to change is a usage error, and nothing is sent.
  EXPECT_EQ(UpdateCommand(session, "a", UpdateArgs()), 1);
  hvstack::v1::RestartPolicy policy;
  EXPECT_FALSE(ParseRestartPolicy("sometimes", &policy));
}

TEST_F(CommandsTest, ShutdownSendsTimeoutAndFallback) {
  Session session = Connected();
  EXPECT_EQ(ShutdownCommand(session, "a", 2.5, /*force_after=*/false), 6);
  EXPECT_EQ(service_.last_shutdown.timeout().seconds(), 2);
  EXPECT_EQ(service_.last_shutdown.timeout().nanos(), 500000000);
  EXPECT_EQ(service_.last_shutdown.fallback(),
            hvstack::v1::ShutdownVmRequest::FALLBACK_FAIL);
  EXPECT_THAT(err_.str(), HasSubstr("DEADLINE_EXCEEDED: VM 'a' was not shut"));
  ShutdownCommand(session, "a", 60, /*force_after=*/true);
  EXPECT_EQ(service_.last_shutdown.fallback(),
            hvstack::v1::ShutdownVmRequest::FALLBACK_FORCE_OFF);
}

TEST_F(CommandsTest, StatsPrintsPerVpLines) {
  Session session = Connected();
  EXPECT_EQ(StatsCommand(session, "a"), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("uptime: 3.0s\n"));
  EXPECT_THAT(out_.str(), HasSubstr("worker_rss: 3.0MiB\n"));
  EXPECT_THAT(out_.str(),
              HasSubstr("vp0: cpu 1.500s, exits 7 interrupted=2 port_io=5\n"));
  // ListVmStats is UNIMPLEMENTED by the fake: exit 6.
  EXPECT_EQ(StatsCommand(session, ""), 6);
}

}  // namespace
}  // namespace vmctl
