// Checks the tables with an independent implementation: ACPICA's iasl (Debian's
// acpica-tools), the same code base Linux's ACPI subsystem is built from. Each
// table is disassembled, the disassembly is checked for what the guest needs,
// and then compiled back: a table that comes out of ACPICA's compiler byte for
// byte as it went in was parsed field for field as we meant it.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmwp/acpi/acpi_tables.h"
#include "vmwp/acpi/table_test_util.h"

namespace vmwp::acpi {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// iasl's compiler rejects a _HID that is not a 7- or 8-character PNP/ACPI id.
// "VMBus" is what Hyper-V uses and what Linux's vmbus_drv.c matches, so that
// one error is expected.
constexpr char kHidLengthError[] = "6033";

std::optional<std::string> FindTool(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::vector<std::string> dirs =
      absl::StrSplit(path ? path : "", ':', absl::SkipEmpty());
  dirs.push_back("/usr/bin");  // Bazel may hand tests a minimal PATH.
  for (const std::string& dir : dirs) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

struct Config {
  std::string name;
  AcpiConfig acpi;
};

std::vector<Config> Configs() {
  Config plain{"legacy_1cpu", AcpiConfig{}};
  Config vmbus{"legacy_vmbus_64cpu", AcpiConfig{}};
  vmbus.acpi.vcpu_count = 64;
  vmbus.acpi.vmbus = VmbusAcpiDevice{};
  Config bare{"no_legacy_4cpu", AcpiConfig{}};
  bare.acpi.vcpu_count = 4;
  bare.acpi.legacy_devices = false;
  return {plain, vmbus, bare};
}

class IaslTest : public ::testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    std::optional<std::string> iasl = FindTool("iasl");
    if (!iasl.has_value()) {
      GTEST_SKIP() << "iasl (acpica-tools) not installed; "
                      "deploy/install-deps.sh installs it";
    }
    iasl_ = *iasl;
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp ? tmp : "/tmp", "/iasl_", GetParam().name, "_",
                        getpid());
    ASSERT_EQ(std::system(absl::StrCat("mkdir -p '", dir_, "'").c_str()), 0);
    absl::StatusOr<AcpiTables> tables = BuildAcpiTables(GetParam().acpi);
    ASSERT_TRUE(tables.ok()) << tables.status();
    tables_ = *std::move(tables);
  }

  std::string PathOf(const std::string& file) const {
    return absl::StrCat(dir_, "/", file);
  }

  void WriteTable(const std::string& signature) {
    absl::Span<const uint8_t> bytes = tables_.TableBytes(signature);
    ASSERT_FALSE(bytes.empty()) << signature;
    std::ofstream out(PathOf(signature + ".dat"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    ASSERT_TRUE(out.good());
  }

  std::string ReadFile(const std::string& file) const {
    std::ifstream in(PathOf(file), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::pair<int, std::string> Iasl(const std::string& args) const {
    return Run(iasl_, args);
  }

  // Runs `tool` with `args` in the test's directory; returns its exit code and
  // output.
  std::pair<int, std::string> Run(const std::string& tool,
                                  const std::string& args) const {
    const std::string command =
        absl::StrCat("cd '", dir_, "' && '", tool, "' ", args, " 2>&1");
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return {-1, "popen failed"};
    std::string output;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
    const int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
  }

  // Writes `signature`'s table and disassembles it; returns the disassembly.
  std::string Disassemble(const std::string& signature) {
    WriteTable(signature);
    auto [code, output] = Iasl(absl::StrCat("-d ", signature, ".dat"));
    EXPECT_EQ(code, 0) << output;
    EXPECT_THAT(output, Not(HasSubstr("rror"))) << output;
    const std::string dsl = ReadFile(signature + ".dsl");
    EXPECT_FALSE(dsl.empty())
        << "no disassembly of " << signature << ": " << output;
    // ACPICA marks a table it could not parse completely with "****" lines.
    EXPECT_THAT(dsl, Not(HasSubstr("****"))) << dsl;
    return dsl;
  }

  std::string iasl_;
  std::string dir_;
  AcpiTables tables_;
};

TEST_P(IaslTest, EveryTableDisassemblesCleanly) {
  for (const char* signature : {"XSDT", "FACP", "FACS", "APIC", "DSDT"}) {
    SCOPED_TRACE(signature);
    Disassemble(signature);
  }
}

TEST_P(IaslTest, DsdtNamesTheDevices) {
  const std::string dsl = Disassemble("DSDT");
  EXPECT_THAT(dsl, HasSubstr("Name (\\_S5, Package (0x04)"));
  const bool legacy = GetParam().acpi.legacy_devices;
  for (const char* id : {"EisaId (\"PNP0501\")", "EisaId (\"PNP0303\")",
                         "EisaId (\"PNP0B00\")"}) {
    EXPECT_EQ(absl::StrContains(dsl, id), legacy) << id;
  }
  EXPECT_EQ(absl::StrContains(dsl, "Name (_HID, \"VMBus\")"),
            GetParam().acpi.vmbus.has_value());
  if (legacy) {
    EXPECT_THAT(dsl, HasSubstr("0x03F8,             // Range Minimum"));
    EXPECT_THAT(dsl, HasSubstr("{4}"));
  }
}

TEST_P(IaslTest, FadtAsAcpicaReadsIt) {
  const std::string dsl = Disassemble("FACP");
  EXPECT_THAT(dsl, HasSubstr("Revision : 06"));
  EXPECT_THAT(dsl, HasSubstr("SCI Interrupt : 0009"));
  EXPECT_THAT(dsl, HasSubstr("PM1A Event Block Address : 00000600"));
  EXPECT_THAT(dsl, HasSubstr("PM1A Control Block Address : 00000604"));
  EXPECT_THAT(dsl, HasSubstr("Hardware Reduced (V5) : 0"));
  EXPECT_THAT(dsl, HasSubstr("Reset Register Supported (V2) : 1"));
  EXPECT_THAT(dsl, HasSubstr("Value to cause reset : FE"));
  const char* legacy = GetParam().acpi.legacy_devices ? ": 1" : ": 0";
  EXPECT_THAT(dsl, HasSubstr(absl::StrCat("8042 Present on ports 60/64 (V2) ",
                                          legacy)));
  EXPECT_THAT(
      dsl, HasSubstr(absl::StrCat("Legacy Devices Supported (V2) ", legacy)));
}

TEST_P(IaslTest, MadtAsAcpicaReadsIt) {
  const std::string dsl = Disassemble("APIC");
  const auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = dsl.find(what); at != std::string::npos;
         at = dsl.find(what, at + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("[Processor Local APIC]"), GetParam().acpi.vcpu_count);
  EXPECT_EQ(count("[I/O APIC]"), 1u);
  EXPECT_EQ(count("[Interrupt Source Override]"), 2u);
  EXPECT_EQ(count("[Local APIC NMI]"), 1u);
  EXPECT_THAT(dsl, HasSubstr("PC-AT Compatibility : 1"));
}

TEST_P(IaslTest, RecompiledDisassemblyIsByteIdentical) {
  for (const char* signature : {"XSDT", "FACP", "FACS", "APIC", "DSDT"}) {
    SCOPED_TRACE(signature);
    Disassemble(signature);
    // -on keeps iasl from shortening "\_S5_" to "_S5_" (same meaning, one byte
    // less).
    auto [code, output] =
        Iasl(absl::StrCat("-vw ", kHidLengthError, " -on -p rt_", signature,
                          " ", signature, ".dsl"));
    ASSERT_EQ(code, 0) << output;
    EXPECT_THAT(output, HasSubstr("0 Errors, 0 Warnings")) << output;
    const std::string ours = ReadFile(absl::StrCat(signature, ".dat"));
    const std::string theirs = ReadFile(absl::StrCat("rt_", signature, ".aml"));
    ASSERT_EQ(ours.size(), theirs.size()) << output;
    for (size_t i = 0; i < ours.size(); ++i) {
      if (ours[i] == theirs[i]) continue;
      // iasl stamps its own compiler id and version (bytes 28-35), so the
      // checksum (9) changes with them. And it writes 0 ("not checked") where
      // we compute a resource template's End Tag checksum.
      const bool header_stamp =
          std::string(signature) != "FACS" && (i == 9 || (i >= 28 && i < 36));
      const bool end_tag_checksum = i > 0 && ours[i - 1] == 0x79 &&
                                    theirs[i - 1] == 0x79 && theirs[i] == 0;
      EXPECT_TRUE(header_stamp || end_tag_checksum)
          << absl::StrFormat("byte %d: ours %#x, iasl's %#x", i,
                             uint8_t(ours[i]), uint8_t(theirs[i]));
    }
  }
}

TEST_P(IaslTest, RsdpMatchesIaslsEncoding) {
  // iasl 20200925 cannot disassemble a bare RSDP (it looks for an SDT header),
  // but its data table compiler builds one. Describe ours in its source format
  // and compare the bytes, checksums included (iasl computes both).
  const absl::Span<const uint8_t> rsdp = tables_.TableBytes("RSDP");
  ASSERT_EQ(rsdp.size(), 36u);
  const std::string source = absl::StrFormat(
      "[0008] Signature : \"RSD PTR \"\n"
      "[0001] Checksum : 00\n"
      "[0006] Oem ID : \"HVSTCK\"\n"
      "[0001] Revision : 02\n"
      "[0004] RSDT Address : 00000000\n"
      "[0004] Length : 00000024\n"
      "[0008] XSDT Address : %016X\n"
      "[0001] Extended Checksum : 00\n"
      "[0003] Reserved : 000000\n",
      U64At(rsdp, 24));
  std::ofstream(PathOf("rsdp.asl")) << source;
  auto [code, output] = Iasl("rsdp.asl");
  ASSERT_EQ(code, 0) << output;
  const std::string theirs = ReadFile("rsdp.aml");
  EXPECT_EQ(theirs, std::string(rsdp.begin(), rsdp.end()));
}

TEST_P(IaslTest, AcpicaInterpreterLoadsAndEvaluatesTheNamespace) {
  // acpiexec runs ACPICA's AML interpreter, the one inside Linux, over our
  // FADT, FACS, MADT and DSDT (it supplies its own RSDP and XSDT).
  std::optional<std::string> acpiexec = FindTool("acpiexec");
  if (!acpiexec.has_value())
    GTEST_SKIP() << "acpiexec (acpica-tools) not installed";
  for (const char* signature : {"FACP", "FACS", "APIC", "DSDT"})
    WriteTable(signature);

  std::vector<std::string> evaluate = {"\\_S5"};
  if (GetParam().acpi.legacy_devices) {
    evaluate.insert(evaluate.end(), {"\\_SB.COM1._HID", "\\_SB.COM1._CRS",
                                     "\\_SB.KBD._CRS", "\\_SB.RTC._CRS"});
  }
  if (GetParam().acpi.vmbus.has_value()) {
    evaluate.insert(evaluate.end(),
                    {"\\_SB.VMBS._HID", "\\_SB.VMBS._UID", "\\_SB.VMBS._CRS",
                     "\\_SB.HVHC._HID", "\\_SB.HVHC._CRS"});
  }
  std::string commands;
  for (const std::string& path : evaluate)
    absl::StrAppend(&commands, "evaluate ", path, "; ");
  auto [code, output] = Run(
      *acpiexec,
      absl::StrCat("-b '", commands, "' FACP.dat FACS.dat APIC.dat DSDT.dat"));
  ASSERT_EQ(code, 0) << output;
  EXPECT_THAT(output, Not(HasSubstr("ACPI Error"))) << output;
  EXPECT_THAT(output, Not(HasSubstr("ACPI Warning"))) << output;
  EXPECT_THAT(output, Not(HasSubstr("AE_NOT_FOUND"))) << output;
  EXPECT_THAT(
      output,
      HasSubstr(
          "[Package] Contains 4 Elements:\n    [Integer] = 0000000000000005"));
  if (GetParam().acpi.legacy_devices) {
    EXPECT_THAT(
        output,
        HasSubstr("[Integer] = 000000000105D041"));  // EISAID("PNP0501")
    EXPECT_THAT(output, HasSubstr("47 01 F8 03 F8 03 01 08 22 10 00 79"));
  }
  if (GetParam().acpi.vmbus.has_value()) {
    // ACPICA (and so Linux) upper-cases a string _HID, which is why vmbus_drv.c
    // matches "VMBUS" as well as "VMBus".
    EXPECT_THAT(output, HasSubstr("[String] Length 05 = \"VMBUS\""));
    EXPECT_THAT(output, HasSubstr("22 20 00 79"));  // IRQNoFlags {5}
    // PNP0C02 reserving the hypercall port 0x4856.
    EXPECT_THAT(output, HasSubstr("[Integer] = 00000000020CD041"));
    EXPECT_THAT(output, HasSubstr("47 01 56 48 56 48 01 01 79"));
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, IaslTest, ::testing::ValuesIn(Configs()),
                         [](const ::testing::TestParamInfo<Config>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace vmwp::acpi
