#include "vmms/nic_config.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmms {
namespace {

using ::testing::HasSubstr;

TEST(NicConfigTest, MacRoundTripsInLowerCase) {
  absl::StatusOr<MacAddress> mac = ParseMac("02:AB:cd:00:ff:10", "mac");
  ASSERT_TRUE(mac.ok()) << mac.status();
  EXPECT_EQ(*mac, (MacAddress{0x02, 0xab, 0xcd, 0x00, 0xff, 0x10}));
  EXPECT_EQ(FormatMac(*mac), "02:ab:cd:00:ff:10");
}

TEST(NicConfigTest, MalformedMacsAreRefusedNamingFieldAndValue) {
  for (const char* bad :
       {"", "02:ab:cd:00:ff", "02:ab:cd:00:ff:1", "02-ab-cd-00-ff-10",
        "02:ab:cd:00:ff:1g", "02:ab:cd:00:ff:10:", "0x:ab:cd:00:ff:10",
        "02:ab:cd:00:ff:10 "}) {
    absl::StatusOr<MacAddress> mac = ParseMac(bad, "config.nics[2].mac");
    ASSERT_FALSE(mac.ok()) << bad;
    EXPECT_EQ(mac.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(mac.status().message(), HasSubstr("config.nics[2].mac"));
    EXPECT_THAT(mac.status().message(), HasSubstr("not a valid MAC address"));
  }
}

TEST(NicConfigTest, GeneratedMacsAreLocallyAdministeredUnicastUnderThePrefix) {
  std::set<MacAddress> seen;
  for (int i = 0; i < 200; ++i) {
    MacAddress mac = GenerateMac();
    EXPECT_EQ(mac[0], 0x02);
    EXPECT_EQ(mac[1], 0x68);
    EXPECT_EQ(mac[2], 0x76);
    EXPECT_EQ(mac[0] & 0x01, 0) << "unicast";
    EXPECT_EQ(mac[0] & 0x02, 0x02) << "locally administered";
    seen.insert(mac);
  }
  // 24 random bits: 200 draws colliding more than a couple of times would
  // mean the bytes are not random.
  EXPECT_GT(seen.size(), 195u);
}

TEST(NicConfigTest, HostInterfaceNamesFitIfnamsizAndAliasesParseBack) {
  const std::string uuid = "1A2B3C4D-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
  EXPECT_EQ(HostInterfaceName(uuid, 0), "hv1a2b3c4d5en0");
  EXPECT_EQ(HostInterfaceName(uuid, 7), "hv1a2b3c4d5en7");
  EXPECT_LE(HostInterfaceName(uuid, 7).size(), 15u);
  const std::string alias = HostInterfaceAlias(uuid, 3);
  EXPECT_EQ(alias, "hvstack vm " + uuid + " nic 3");
  std::string parsed_uuid;
  uint32_t index = 0;
  ASSERT_TRUE(ParseHostInterfaceAlias(alias, &parsed_uuid, &index));
  EXPECT_EQ(parsed_uuid, uuid);
  EXPECT_EQ(index, 3u);
  for (const char* other : {"", "hvstack vm", "hvstack vm x nic 1", "docker0",
                            ("hvstack vm " + uuid + " nic 8").c_str(),
                            ("hvstack vm " + uuid + " nic -1").c_str(),
                            ("hvstack vm " + uuid + " disk 1").c_str()}) {
    EXPECT_FALSE(ParseHostInterfaceAlias(other, &parsed_uuid, &index)) << other;
  }
}

TEST(NicConfigTest, InterfaceNamesFollowTheKernelsRules) {
  EXPECT_TRUE(ValidateInterfaceName("br0", "b").ok());
  EXPECT_TRUE(ValidateInterfaceName("a23456789012345", "b").ok());
  for (const char* bad :
       {"", "a234567890123456", ".", "..", "br/0", "br:0", "br 0", "br\t0"}) {
    absl::Status s = ValidateInterfaceName(bad, "nic.bridge");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("nic.bridge")) << bad;
  }
}

TEST(NicConfigTest, NormalizeChecksUnicastZeroMtuAndCanonicalizes) {
  hvstack::v1::NicConfig nic;
  nic.set_mac("02:AA:BB:CC:DD:EE");
  nic.set_bridge("br0");
  nic.set_index(5);  // Ignored: vmms assigns indices.
  absl::StatusOr<hvstack::v1::NicConfig> normal = NormalizeNic(nic, "nic");
  ASSERT_TRUE(normal.ok()) << normal.status();
  EXPECT_EQ(normal->mac(), "02:aa:bb:cc:dd:ee");
  EXPECT_EQ(normal->mtu(), kDefaultNicMtu);
  EXPECT_EQ(normal->index(), 0u);

  nic.set_mac("01:00:5e:00:00:01");
  absl::StatusOr<hvstack::v1::NicConfig> multicast = NormalizeNic(nic, "nic");
  EXPECT_EQ(multicast.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(multicast.status().message(),
              HasSubstr("nic.mac '01:00:5e:00:00:01' is a multicast address"));
  nic.set_mac("ff:ff:ff:ff:ff:ff");
  EXPECT_THAT(NormalizeNic(nic, "nic").status().message(),
              HasSubstr("multicast"));
  nic.set_mac("00:00:00:00:00:00");
  EXPECT_THAT(NormalizeNic(nic, "nic").status().message(),
              HasSubstr("all zeros"));

  nic.set_mac("");
  for (uint32_t mtu : {1u, 67u, 9001u}) {
    nic.set_mtu(mtu);
    absl::Status s = NormalizeNic(nic, "nic").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << mtu;
    EXPECT_THAT(s.message(), HasSubstr("nic.mtu")) << mtu;
  }
  nic.set_mtu(9000);
  EXPECT_EQ(NormalizeNic(nic, "nic")->mtu(), 9000u);
}

TEST(NicConfigTest, NormalizeNicsNumbersAdaptersAndRefusesDuplicatesAndExcess) {
  hvstack::v1::VmConfig config;
  config.add_nics()->set_bridge("br0");
  config.add_nics()->set_mac("02:00:00:00:00:01");
  config.add_nics()->set_mac("02:00:00:00:00:02");
  ASSERT_TRUE(NormalizeNics(config).ok());
  EXPECT_EQ(config.nics(0).index(), 0u);
  EXPECT_EQ(config.nics(2).index(), 2u);

  config.add_nics()->set_mac("02:00:00:00:00:01");
  absl::Status dup = NormalizeNics(config);
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dup.message(),
              HasSubstr("config.nics[3].mac '02:00:00:00:00:01' is a "
                        "duplicate: config.nics[1] has it too"));

  hvstack::v1::VmConfig many;
  for (int i = 0; i < 9; ++i) many.add_nics();
  absl::Status excess = NormalizeNics(many);
  EXPECT_EQ(excess.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(excess.message(), HasSubstr("at most 8"));
}

}  // namespace
}  // namespace vmms
