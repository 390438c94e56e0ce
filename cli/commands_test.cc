// vmctl's subcommands against an in-process fake VmService on a unix socket.
#include "cli/commands.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

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

TEST_F(CommandsTest, UnreachableVmmsNamesTheSocket) {
  Session session = Connect(dir_ + "/nothing.sock", false, out_, err_);
  EXPECT_EQ(ListCommand(session), 5);
  EXPECT_THAT(err_.str(),
              HasSubstr("vmctl: UNAVAILABLE: cannot reach vmms at unix:" +
                        dir_ + "/nothing.sock"));
}

TEST_F(CommandsTest, ConsoleWritesRawBytes) {
  Session session = Connected();
  EXPECT_EQ(ConsoleCommand(session, "a", /*follow=*/true), 0);
  EXPECT_EQ(out_.str(), std::string("raw\0bytes\nfollowed\n", 19));
  out_.str("");
  EXPECT_EQ(ConsoleCommand(session, "a", /*follow=*/false), 0);
  EXPECT_EQ(out_.str(), std::string("raw\0bytes\n", 10));
}

}  // namespace
}  // namespace vmctl
