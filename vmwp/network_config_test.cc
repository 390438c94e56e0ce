#include "vmwp/network_config.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace vmwp {
namespace {

using hvstack::internal::WorkerNic;

class NetworkConfigTest : public ::testing::Test {
 protected:
  // A descriptor with a TAP device's datagram semantics; the other end is
  // kept so that the adapter's end stays a live socket.
  int Tap() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    peers_.emplace_back(sv[1]);
    return sv[0];
  }
  WorkerNic* Add(uint32_t index, int fd,
                 std::string mac = std::string("\x00\x15\x5d\x00\x00\x01", 6)) {
    WorkerNic* n = nics_.Add();
    n->set_index(index);
    n->set_mac(mac);
    n->set_tap_fd(fd);
    n->set_mtu(1500);
    n->set_host_ifname("hvtap" + std::to_string(index));
    n->set_bridge("br0");
    return n;
  }
  absl::StatusOr<std::vector<std::unique_ptr<vsp::net::NetAdapter>>> Build() {
    return BuildNetAdapters(nics_, "4b3a2c1d-0000-4000-8000-00000000abcd",
                            nullptr);
  }
  static bool Open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

  google::protobuf::RepeatedPtrField<WorkerNic> nics_;
  std::vector<base::ScopedFd> peers_;
};

TEST_F(NetworkConfigTest, BuildsOneAdapterPerNic) {
  const int a = Tap(), b = Tap();
  Add(0, a);
  Add(3, b, std::string("\x02\x00\x00\x00\x00\x07", 6))->set_mtu(9000);
  auto adapters = Build();
  ASSERT_TRUE(adapters.ok()) << adapters.status();
  ASSERT_EQ(adapters->size(), 2u);
  EXPECT_EQ((*adapters)[1]->index(), 3u);
  EXPECT_EQ((*adapters)[1]->name(), "nic3 (hvtap3 on br0)");
  // Each gets a different, stable instance; the class is netvsc's.
  const vmbus::Guid i0 = (*adapters)[0]->offer().interface_instance;
  const vmbus::Guid i3 = (*adapters)[1]->offer().interface_instance;
  EXPECT_NE(i0, i3);
  EXPECT_EQ(i0, NetAdapterInstance("4b3a2c1d-0000-4000-8000-00000000abcd", 0));
  EXPECT_NE(i0, NetAdapterInstance("4b3a2c1d-0000-4000-8000-00000000abce", 0));
  EXPECT_EQ((*adapters)[0]->offer().interface_type.ToString(),
            "f8615163-df3e-46c5-913f-f2d2f965ed0e");
  // The status starts link up, nothing counted.
  hvstack::internal::WorkerNicStatus s = NicStatus(*(*adapters)[1]);
  EXPECT_EQ(s.index(), 3u);
  EXPECT_TRUE(s.link_up());
  EXPECT_FALSE(s.guest_ready());
  EXPECT_EQ(s.from_guest_packets() + s.to_guest_drops(), 0u);
  adapters->clear();
  EXPECT_FALSE(Open(a));
  EXPECT_FALSE(Open(b));
}

TEST_F(NetworkConfigTest, BadNicsAreRefusedByNameAndEveryDescriptorClosed) {
  struct Case {
    const char* problem;
    std::function<void(WorkerNic*)> spoil;
  } cases[] = {
      {"MAC address of 5 bytes", [](WorkerNic* n) { n->set_mac("12345"); }},
      {"multicast",
       [](WorkerNic* n) { n->set_mac(std::string("\x01\0\0\0\0\1", 6)); }},
      {"all zero", [](WorkerNic* n) { n->set_mac(std::string(6, '\0')); }},
      {"MTU 9001", [](WorkerNic* n) { n->set_mtu(9001); }},
      {"MTU 67", [](WorkerNic* n) { n->set_mtu(67); }},
      {"TAP descriptor", [](WorkerNic* n) { n->set_tap_fd(987); }},
      {"used twice", [](WorkerNic* n) { n->set_index(0); }},
  };
  for (const Case& c : cases) {
    nics_.Clear();
    const int a = Tap(), b = Tap();
    Add(0, a);
    c.spoil(Add(1, b));
    auto adapters = Build();
    ASSERT_FALSE(adapters.ok()) << c.problem;
    EXPECT_EQ(adapters.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(adapters.status().message().find(c.problem), std::string::npos)
        << adapters.status();
    EXPECT_NE(adapters.status().message().find("network adapter nic"),
              std::string::npos)
        << adapters.status();
    EXPECT_FALSE(Open(a)) << c.problem;
    if (nics_[1].tap_fd() == b) {
      EXPECT_FALSE(Open(b)) << c.problem;
    }
  }
}

}  // namespace
}  // namespace vmwp
