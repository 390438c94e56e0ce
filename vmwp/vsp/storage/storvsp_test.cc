// storvsp end to end against a guest that speaks vstor as Linux's storvsc
// does (drivers/scsi/storvsc_drv.c): the VMBus server, real rings in guest
// memory, GPA-direct packets, and a raw image file on io_uring.

#include "vmwp/vsp/storage/storvsp.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "vmwp/vmbus/gpa_direct.h"
#include "vmwp/vmbus/saved_state.pb.h"
#include "vmwp/vmbus/test_fake_guest.h"
#include "vmwp/vsp/storage/saved_state.pb.h"
#include "vmwp/vsp/storage/test_refused_uring.h"
#include "vmwp/vsp/storage/uring_backend.h"

namespace vsp::storage {
namespace {

using vmbus::testing::FakeGuest;
using vmbus::testing::GuestPacket;

constexpr uint64_t kDiskBytes = 1 << 20;  // 2048 blocks
constexpr uint64_t kRingFirstPage = 16;   // 8 + 8 ring pages
constexpr uint64_t kBufferPage = 64;      // data buffers from here

std::string TempImage(uint64_t bytes, const std::string& tag) {
  std::string path = std::string(getenv("TEST_TMPDIR")) + "/" + tag + ".img";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
  ::close(fd);
  return path;
}

class StorvspTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = TempImage(kDiskBytes, "disk0"); }

  // A controller with the given disks: (target, lun, read_only).
  // `start`: start the backends' completion threads.
  void Build(std::vector<std::tuple<uint8_t, uint8_t, bool>> disks,
             uint32_t vp_count = 1, bool start = true) {
    server_ = std::make_unique<vmbus::VmbusServer>(
        guest_.memory, guest_, vmbus::VmbusServer::Options{.vp_count = 4});
    guest_.server = server_.get();
    std::vector<StorageController::Lun> luns;
    int i = 0;
    for (auto [target, lun, ro] : disks) {
      std::string path =
          i == 0 ? path_ : TempImage(kDiskBytes, "disk" + std::to_string(i));
      ++i;
      base::ScopedFd fd(::open(path.c_str(), ro ? O_RDONLY : O_RDWR));
      auto backend = UringFileBackend::Create(
          std::move(fd),
          {.name = path, .size_bytes = kDiskBytes, .read_only = ro});
      ASSERT_TRUE(backend.ok()) << backend.status();
      StorageController::Lun l;
      l.target = target;
      l.lun = lun;
      l.backend = *std::move(backend);
      l.properties.serial = "serial-" + std::to_string(i);
      luns.push_back(std::move(l));
    }
    auto c = StorageController::Create(
        guest_.memory,
        {.instance =
             vmbus::Guid::FromFields(1, 2, 3, {4, 5, 6, 7, 8, 9, 10, 11}),
         .vp_count = vp_count,
         .add_channel =
             [this](vmbus::Vsp* vsp) { return server_->AddVsp(vsp); }},
        std::move(luns));
    ASSERT_TRUE(c.ok()) << c.status();
    controller_ = *std::move(c);
    if (start) {
      ASSERT_TRUE(controller_->Start(nullptr).ok());
    }
    auto relid = server_->AddVsp(controller_->primary());
    ASSERT_TRUE(relid.ok());
    relid_ = *relid;
    ASSERT_EQ(guest_.Connect(vmbus::kVersionWin10V5_3).version_supported, 1);
    offers_ = guest_.RequestOffers();
    ASSERT_EQ(offers_.size(), 1u);
    ASSERT_EQ(offers_[0].offer.if_type, ScsiInterfaceType());
    // storvsc's rings: 8 pages each way here (Linux: 132 KiB).
    ASSERT_EQ(
        guest_
            .CreateGpadl(relid_, 0xE1E10, FakeGuest::Pages(kRingFirstPage, 16))
            .creation_status,
        0u);
    guest_.InitRings(kRingFirstPage, 16, 8);
    ASSERT_EQ(guest_.Open(relid_, 0xE1E10, 8, 1).status, 0u);
  }

  void TearDown() override {
    if (controller_) controller_->Stop();
    server_.reset();
    controller_.reset();
  }

  void Signal() {
    server_->OnSignalEvent(0, vmbus::VmbusServer::ConnectionIdForRelid(relid_),
                           0);
  }

  // Waits (up to 5 s) for the host's next packet.
  GuestPacket Receive() {
    for (int i = 0; i < 5000; ++i) {
      if (auto p = guest_.in->Read()) return *p;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ADD_FAILURE() << "no reply from the host";
    return {};
  }

  VstorPacket Call(VstorPacket p, uint64_t trans_id = 0xFFFFFFFFFFFFFFFD) {
    p.flags = kRequestCompletionFlag;
    EXPECT_TRUE(guest_.out->Write(
        vmbus::kPacketDataInband, vmbus::kPacketFlagCompletionRequested,
        trans_id, {reinterpret_cast<uint8_t*>(&p), sizeof(p)}));
    Signal();
    GuestPacket r = Receive();
    EXPECT_EQ(r.type, vmbus::kPacketCompletion);
    EXPECT_EQ(r.trans_id, trans_id);
    EXPECT_EQ(r.data.size(), sizeof(VstorPacket));
    VstorPacket out{};
    std::memcpy(&out, r.data.data(), std::min(r.data.size(), sizeof(out)));
    EXPECT_EQ(out.operation, kOpCompleteIo);
    return out;
  }
  VstorPacket Op(uint32_t op) {
    VstorPacket p{};
    p.operation = op;
    return p;
  }

  // storvsc_channel_init: BEGIN, versions newest first, PROPERTIES, END.
  ChannelProperties Initialize() {
    EXPECT_EQ(Call(Op(kOpBeginInitialization)).status, 0u);
    VstorPacket v = Op(kOpQueryProtocolVersion);
    v.version.major_minor = kVersionWin10;
    EXPECT_EQ(Call(v).status, 0u);
    VstorPacket props = Call(Op(kOpQueryProperties));
    EXPECT_EQ(props.status, 0u);
    EXPECT_EQ(Call(Op(kOpEndInitialization)).status, 0u);
    return props.properties;
  }

  // storvsc_queuecommand + storvsc_do_io: one SRB, its buffer (if any) at
  // guest page kBufferPage onwards, as one GPA-direct range.
  VstorPacket Srb(std::vector<uint8_t> cdb, uint32_t length, bool data_in,
                  uint8_t target = 0, uint8_t lun = 0, uint8_t path = 0,
                  std::vector<uint64_t> pfns = {}, uint32_t offset = 0) {
    VstorPacket p{};
    p.operation = kOpExecuteSrb;
    p.flags = kRequestCompletionFlag;
    VmscsiRequest& s = p.vm_srb;
    s.length = sizeof(VmscsiRequest);
    s.path_id = path;
    s.target_id = target;
    s.lun = lun;
    s.cdb_length = static_cast<uint8_t>(cdb.size());
    std::memcpy(s.cdb, cdb.data(), cdb.size());
    s.sense_info_length = kSenseBufferSize;
    s.data_in = length == 0 ? kUnknownType : data_in ? kReadType : kWriteType;
    s.data_transfer_length = length;
    s.srb_flags = length == 0 ? 0
                  : data_in   ? kSrbFlagsDataIn
                              : kSrbFlagsDataOut;
    const uint64_t trans_id = ++next_trans_;
    if (length == 0) {
      EXPECT_TRUE(
          guest_.out->Write(vmbus::kPacketDataInband, 1, trans_id,
                            {reinterpret_cast<uint8_t*>(&p), sizeof(p)}));
    } else {
      if (pfns.empty()) {
        pfns = FakeGuest::Pages(kBufferPage, (offset + length + 4095) / 4096);
      }
      std::vector<uint8_t> ext(8 + 8 + 8 * pfns.size());
      vmbus::GpaDirectHeader h{0, 1};
      vmbus::GpaRangeHeader r{length, offset};
      std::memcpy(ext.data(), &h, 8);
      std::memcpy(ext.data() + 8, &r, 8);
      std::memcpy(ext.data() + 16, pfns.data(), 8 * pfns.size());
      EXPECT_TRUE(guest_.out->WriteExtended(
          vmbus::kPacketDataUsingGpaDirect, 1, trans_id, ext,
          {reinterpret_cast<uint8_t*>(&p), sizeof(p)}));
    }
    Signal();
    GuestPacket reply = Receive();
    EXPECT_EQ(reply.trans_id, trans_id);
    VstorPacket out{};
    std::memcpy(&out, reply.data.data(),
                std::min(reply.data.size(), sizeof(out)));
    return out;
  }
  uint8_t* Buffer() { return guest_.memory.base() + kBufferPage * 4096; }

  static void ExpectSense(const VstorPacket& r, uint8_t key, uint8_t asc) {
    EXPECT_EQ(r.vm_srb.scsi_status, kScsiCheckCondition);
    EXPECT_EQ(r.vm_srb.srb_status, kSrbStatusError | kSrbStatusAutosenseValid);
    Sense s;
    ASSERT_TRUE(
        ParseSense(r.vm_srb.sense_data, r.vm_srb.sense_info_length, &s));
    EXPECT_EQ(static_cast<uint8_t>(s.key), key);
    EXPECT_EQ(s.asc, asc);
  }

  FakeGuest guest_;
  std::unique_ptr<vmbus::VmbusServer> server_;
  std::unique_ptr<StorageController> controller_;
  std::vector<vmbus::OfferChannel> offers_;
  uint32_t relid_ = 0;
  uint64_t next_trans_ = 0;
  std::string path_;
};

std::vector<uint8_t> Rw10(uint8_t op, uint32_t lba, uint16_t blocks) {
  return {op,
          0,
          static_cast<uint8_t>(lba >> 24),
          static_cast<uint8_t>(lba >> 16),
          static_cast<uint8_t>(lba >> 8),
          static_cast<uint8_t>(lba),
          0,
          static_cast<uint8_t>(blocks >> 8),
          static_cast<uint8_t>(blocks),
          0};
}

TEST_F(StorvspTest, InitializationAsLinuxDoesIt) {
  Build({{0, 0, false}});
  // Out of order first: nothing before BEGIN_INITIALIZATION.
  EXPECT_EQ(Call(Op(kOpQueryProperties)).status, kStatusInvalidDeviceState);
  EXPECT_EQ(Srb({kTestUnitReady, 0, 0, 0, 0, 0}, 0, false).status,
            kStatusInvalidDeviceState);
  EXPECT_EQ(Call(Op(kOpBeginInitialization)).status, 0u);
  EXPECT_EQ(Call(Op(kOpEndInitialization)).status, kStatusInvalidDeviceState);
  // An older version is refused; Linux then tries the next of its list.
  VstorPacket v = Op(kOpQueryProtocolVersion);
  v.version.major_minor = (4 << 8) | 2;
  EXPECT_EQ(Call(v).status, kStatusRevisionMismatch);
  v.version.major_minor = kVersionWin8_1;
  EXPECT_EQ(Call(v).status, 0u);
  VstorPacket props = Call(Op(kOpQueryProperties));
  EXPECT_EQ(props.properties.max_transfer_bytes, 1u << 20);
  EXPECT_EQ(props.properties.max_channel_cnt, 0);  // one VP
  EXPECT_EQ(props.properties.flags, 0u);
  EXPECT_EQ(Call(Op(kOpEndInitialization)).status, 0u);
  EXPECT_TRUE(controller_->ready());
  EXPECT_EQ(controller_->protocol_version(), kVersionWin8_1);
  EXPECT_EQ(Call(Op(kOpFcHbaData)).status, kStatusNotSupported);
  EXPECT_EQ(Call(Op(kOpResetBus)).status, 0u);
  EXPECT_EQ(Srb({kTestUnitReady, 0, 0, 0, 0, 0}, 0, false).vm_srb.srb_status,
            kSrbStatusSuccess);
}

TEST_F(StorvspTest, ScanInquiryAndReportLuns) {
  Build({{0, 0, false}, {0, 3, true}});
  Initialize();
  VstorPacket inq = Srb({kInquiry, 0, 0, 0, 36, 0}, 36, true);
  EXPECT_EQ(inq.vm_srb.srb_status, kSrbStatusSuccess);
  EXPECT_EQ(inq.vm_srb.data_transfer_length, 36u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(Buffer()) + 8, 8), "Msft    ");
  // Linux scans channels 0-7, targets 0-1, and storvsc takes every INQUIRY
  // as a success whatever the SRB status: an absent target or channel
  // answers "no device" (qualifier 3, type 0x1F) and an empty LUN list;
  // other commands get INVALID_LUN.
  for (auto [target, path] : {std::pair{1, 0}, std::pair{0, 1}}) {
    std::memset(Buffer(), 0, 36);
    VstorPacket none =
        Srb({kInquiry, 0, 0, 0, 36, 0}, 36, true, static_cast<uint8_t>(target),
            0, static_cast<uint8_t>(path));
    EXPECT_EQ(none.vm_srb.srb_status, kSrbStatusSuccess);
    EXPECT_EQ(Buffer()[0], 0x7F) << "target " << target << " path " << path;
    std::memset(Buffer(), 0xEE, 16);
    VstorPacket luns =
        Srb({kReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0}, 16, true,
            static_cast<uint8_t>(target), 0, static_cast<uint8_t>(path));
    EXPECT_EQ(luns.vm_srb.srb_status, kSrbStatusSuccess);
    EXPECT_EQ(Buffer()[3], 0) << "LUN list length";
    EXPECT_EQ(Srb({kTestUnitReady, 0, 0, 0, 0, 0}, 0, false,
                  static_cast<uint8_t>(target), 0, static_cast<uint8_t>(path))
                  .vm_srb.srb_status,
              kSrbStatusInvalidLun);
  }
  // An absent LUN of a present target: qualifier 3.
  VstorPacket absent = Srb({kInquiry, 0, 0, 0, 36, 0}, 36, true, 0, 1);
  EXPECT_EQ(absent.vm_srb.srb_status, kSrbStatusSuccess);
  EXPECT_EQ(Buffer()[0], 0x7F);
  VstorPacket luns =
      Srb({kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256, true);
  EXPECT_EQ(luns.vm_srb.data_transfer_length, 24u);
  EXPECT_EQ(Buffer()[3], 16);
  EXPECT_EQ(Buffer()[9], 0);
  EXPECT_EQ(Buffer()[17], 3);
  // The read-only LUN says so in MODE SENSE.
  VstorPacket ms = Srb({kModeSense6, 0, 0x3F, 0, 4, 0}, 4, true, 0, 3);
  EXPECT_EQ(ms.vm_srb.data_transfer_length, 4u);
  EXPECT_EQ(Buffer()[2], 0x80);
}

TEST_F(StorvspTest, WriteFlushReadBackIncludingTheLastBlock) {
  Build({{0, 0, false}});
  Initialize();
  // A pattern over 8 blocks at LBA 100, and over the last 4 blocks, with an
  // unaligned buffer (offset 512 into its first page, as a bio may be).
  for (auto [lba, blocks, offset] :
       {std::tuple{100u, 8u, 0u}, std::tuple{2044u, 4u, 512u}}) {
    const uint32_t bytes = blocks * 512;
    for (uint32_t i = 0; i < bytes; ++i) {
      Buffer()[offset + i] = static_cast<uint8_t>(lba * 7 + i * 13);
    }
    VstorPacket w =
        Srb(Rw10(kWrite10, lba, blocks), bytes, false, 0, 0, 0, {}, offset);
    ASSERT_EQ(w.vm_srb.srb_status, kSrbStatusSuccess);
    EXPECT_EQ(w.vm_srb.scsi_status, kScsiGood);
    EXPECT_EQ(w.vm_srb.data_transfer_length, bytes);
    VstorPacket f =
        Srb({kSynchronizeCache10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, false);
    EXPECT_EQ(f.vm_srb.srb_status, kSrbStatusSuccess);
    std::memset(Buffer(), 0, 8192);
    VstorPacket r =
        Srb(Rw10(kRead10, lba, blocks), bytes, true, 0, 0, 0, {}, offset);
    ASSERT_EQ(r.vm_srb.srb_status, kSrbStatusSuccess);
    EXPECT_EQ(r.vm_srb.data_transfer_length, bytes);
    for (uint32_t i = 0; i < bytes; ++i) {
      ASSERT_EQ(Buffer()[offset + i], static_cast<uint8_t>(lba * 7 + i * 13))
          << "byte " << i << " of LBA " << lba;
    }
    // And the host file has it.
    std::vector<uint8_t> host(bytes);
    int fd = ::open(path_.c_str(), O_RDONLY);
    ASSERT_EQ(::pread(fd, host.data(), bytes, lba * 512), bytes);
    ::close(fd);
    for (uint32_t i = 0; i < bytes; ++i) {
      ASSERT_EQ(host[i], static_cast<uint8_t>(lba * 7 + i * 13));
    }
  }
  // One block past the end.
  ExpectSense(Srb(Rw10(kRead10, 2047, 2), 1024, true), 0x5, 0x21);
  ExpectSense(Srb({0xC2, 0, 0, 0, 0, 0}, 0, false), 0x5, 0x20);
  StorageStats s = controller_->stats();
  EXPECT_EQ(s.bytes_written, 12u * 512);
  EXPECT_EQ(s.bytes_read, 12u * 512);
  EXPECT_EQ(s.flushes, 2u);
}

TEST_F(StorvspTest, ReadOnlyDiskRefusesWrites) {
  Build({{0, 0, true}});
  Initialize();
  ExpectSense(Srb(Rw10(kWrite10, 0, 1), 512, false), 0x7, 0x27);
  EXPECT_EQ(Srb(Rw10(kRead10, 0, 1), 512, true).vm_srb.srb_status,
            kSrbStatusSuccess);
}

TEST_F(StorvspTest, UnmapPunchesHoles) {
  Build({{0, 0, false}});
  Initialize();
  std::memset(Buffer(), 0xAB, 1 << 16);
  for (uint32_t lba = 0; lba < 1024; lba += 128) {
    ASSERT_EQ(Srb(Rw10(kWrite10, lba, 128), 65536, false).vm_srb.srb_status,
              kSrbStatusSuccess);
  }
  Srb({kSynchronizeCache10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, false);
  struct stat before;
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  // B2 says UNMAP; one descriptor for LBAs 0-1023, as sd builds it.
  VstorPacket b2 = Srb({kInquiry, 1, 0xB2, 0, 64, 0}, 64, true);
  ASSERT_EQ(b2.vm_srb.srb_status, kSrbStatusSuccess);
  ASSERT_EQ(Buffer()[5] & 0x80, 0x80);
  uint8_t params[24] = {0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
                        0, 0,  0, 0,  0, 0, 4, 0, 0, 0, 0, 0};
  std::memcpy(Buffer(), params, sizeof(params));
  VstorPacket u = Srb({kUnmap, 0, 0, 0, 0, 0, 0, 0, sizeof(params), 0},
                      sizeof(params), false);
  EXPECT_EQ(u.vm_srb.srb_status, kSrbStatusSuccess);
  struct stat after;
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);
  EXPECT_LT(after.st_blocks, before.st_blocks);
  EXPECT_EQ(after.st_size, before.st_size);
  VstorPacket r = Srb(Rw10(kRead10, 0, 8), 4096, true);
  ASSERT_EQ(r.vm_srb.srb_status, kSrbStatusSuccess);
  EXPECT_EQ(Buffer()[0], 0);
  EXPECT_EQ(Buffer()[4095], 0);
}

TEST_F(StorvspTest, HostileRequestsGetErrorStatuses) {
  Build({{0, 0, false}});
  Initialize();
  // A buffer page outside guest RAM.
  EXPECT_EQ(Srb(Rw10(kRead10, 0, 1), 512, true, 0, 0, 0, {1u << 30})
                .vm_srb.srb_status,
            kSrbStatusInvalidRequest);
  // More than the negotiated maximum.
  EXPECT_EQ(Srb(Rw10(kRead10, 0, 1), (1 << 20) + 4096, true, 0, 0, 0, {1})
                .vm_srb.srb_status,
            kSrbStatusInvalidRequest);
  // The CDB asks for more than the buffer holds.
  ExpectSense(Srb(Rw10(kRead10, 0, 16), 4096, true), 0x5, 0x24);
  // A 17-byte CDB.
  VstorPacket p{};
  p.operation = kOpExecuteSrb;
  p.vm_srb.cdb_length = 17;
  EXPECT_EQ(Call(p, 77).vm_srb.srb_status, kSrbStatusInvalidRequest);
  // A data length with an in-band packet (no buffer).
  p.vm_srb.cdb_length = 10;
  p.vm_srb.data_transfer_length = 512;
  EXPECT_EQ(Call(p, 78).vm_srb.srb_status, kSrbStatusInvalidRequest);
  // A packet shorter than a vstor_packet.
  uint8_t tiny[8] = {kOpExecuteSrb};
  ASSERT_TRUE(guest_.out->Write(vmbus::kPacketDataInband, 1, 79, tiny));
  Signal();
  GuestPacket r = Receive();
  EXPECT_EQ(r.trans_id, 79u);
  VstorPacket out;
  std::memcpy(&out, r.data.data(), sizeof(out));
  EXPECT_EQ(out.status, kStatusInvalidParameter);
  // Malformed GPA-direct extensions: no ranges, offset outside the page.
  VstorPacket srb{};
  srb.operation = kOpExecuteSrb;
  srb.vm_srb.cdb_length = 10;
  std::memcpy(srb.vm_srb.cdb, Rw10(kRead10, 0, 1).data(), 10);
  srb.vm_srb.data_transfer_length = 512;
  for (std::vector<uint8_t> ext :
       {std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 0, 0},
        std::vector<uint8_t>{0, 0,    0, 0, 1,  0, 0, 0, 0, 2, 0, 0,
                             0, 0x10, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0}}) {
    ASSERT_TRUE(guest_.out->WriteExtended(
        vmbus::kPacketDataUsingGpaDirect, 1, 80, ext,
        {reinterpret_cast<uint8_t*>(&srb), sizeof(srb)}));
    Signal();
    GuestPacket g = Receive();
    std::memcpy(&out, g.data.data(), sizeof(out));
    EXPECT_EQ(out.vm_srb.srb_status, kSrbStatusInvalidRequest);
  }
  // Still serving.
  EXPECT_EQ(Srb(Rw10(kRead10, 0, 1), 512, true).vm_srb.srb_status,
            kSrbStatusSuccess);
  EXPECT_GE(controller_->stats().invalid_requests, 6u);
}

TEST_F(StorvspTest, FloodWithoutReadingCompletionsIsBounded) {
  Build({{0, 0, false}});
  Initialize();
  // 2000 TEST UNIT READYs while the guest never reads its inbound ring:
  // completions fill the ring, then a bounded queue, then are dropped.
  VstorPacket p{};
  p.operation = kOpExecuteSrb;
  p.vm_srb.cdb_length = 6;
  for (int i = 0; i < 2000; ++i) {
    while (!guest_.out->Write(vmbus::kPacketDataInband, 1, 1000 + i,
                              {reinterpret_cast<uint8_t*>(&p), sizeof(p)})) {
      Signal();
    }
  }
  Signal();
  StorageStats s = controller_->stats();
  EXPECT_EQ(s.srbs, 2000u);
  EXPECT_GT(s.dropped_completions, 0u);
  // Reading frees room; the queued completions come out in order.
  GuestPacket first = Receive();
  EXPECT_EQ(first.trans_id, 1000u);
}

// The kernel refuses io_uring submissions (io_uring_enter fails: EBUSY
// here, through seccomp on the guest's thread, which is also the drain's):
// prepared reads wait in the submission queue; the SRB that finds it full
// is answered BUSY (the guest retries) instead of crashing the worker; the
// backend's completion thread submits the waiting reads again, with no
// further request from the guest (which may be waiting for them).
TEST_F(StorvspTest, RefusedSubmissionsAnswerBusyAndTheRestCompleteLater) {
  // The completion threads start later: until then nothing but the drains
  // submits (deterministic).
  Build({{0, 0, false}}, 1, /*start=*/false);
  Initialize();
  constexpr int kQueued = 256;  // UringFileBackend's default SQ size
  auto send_read = [&](uint64_t trans_id) {
    VstorPacket p{};
    p.operation = kOpExecuteSrb;
    p.flags = kRequestCompletionFlag;
    VmscsiRequest& srb = p.vm_srb;
    srb.length = sizeof(VmscsiRequest);
    const std::vector<uint8_t> cdb = Rw10(0x28, trans_id % 2048, 1);
    srb.cdb_length = static_cast<uint8_t>(cdb.size());
    std::memcpy(srb.cdb, cdb.data(), cdb.size());
    srb.data_in = kReadType;
    srb.srb_flags = kSrbFlagsDataIn;
    srb.data_transfer_length = 512;
    std::vector<uint8_t> ext(8 + 8 + 8);
    vmbus::GpaDirectHeader h{0, 1};
    vmbus::GpaRangeHeader r{512, 0};
    const uint64_t pfn = kBufferPage;
    std::memcpy(ext.data(), &h, 8);
    std::memcpy(ext.data() + 8, &r, 8);
    std::memcpy(ext.data() + 16, &pfn, 8);
    EXPECT_TRUE(guest_.out->WriteExtended(
        vmbus::kPacketDataUsingGpaDirect, 1, trans_id, ext,
        {reinterpret_cast<uint8_t*>(&p), sizeof(p)}));
    Signal();
  };
  std::thread refused([&] {
    ASSERT_TRUE(RefuseIoUringEnterOnThisThread());
    for (int i = 1; i <= kQueued + 1; ++i) send_read(i);
  });
  refused.join();
  // Only the last one was answered: BUSY.
  GuestPacket busy = Receive();
  EXPECT_EQ(busy.trans_id, uint64_t{kQueued + 1});
  VstorPacket b{};
  std::memcpy(&b, busy.data.data(), std::min(busy.data.size(), sizeof(b)));
  EXPECT_EQ(b.vm_srb.srb_status, kSrbStatusBusy);
  EXPECT_EQ(b.vm_srb.scsi_status, kScsiBusy);
  EXPECT_FALSE(guest_.in->Read().has_value());
  EXPECT_EQ(controller_->stats().busy, 1u);
  // The completion thread (woken by the refusals) submits them again.
  ASSERT_TRUE(controller_->Start(nullptr).ok());
  int good = 0;
  for (int i = 0; i < kQueued; ++i) {
    GuestPacket reply = Receive();
    VstorPacket out{};
    std::memcpy(&out, reply.data.data(),
                std::min(reply.data.size(), sizeof(out)));
    if (out.vm_srb.srb_status == kSrbStatusSuccess &&
        out.vm_srb.data_transfer_length == 512) {
      ++good;
    }
  }
  EXPECT_EQ(good, kQueued);
  EXPECT_EQ(controller_->stats().bytes_read, uint64_t{kQueued} * 512);
}

TEST_F(StorvspTest, SubChannelsOnRequest) {
  Build({{0, 0, false}}, /*vp_count=*/3);
  ChannelProperties props = Initialize();
  EXPECT_EQ(props.max_channel_cnt, 2);
  EXPECT_EQ(props.flags, kChannelSupportsMultiChannel);
  VstorPacket too_many = Op(kOpCreateSubChannels);
  too_many.sub_channel_count = 3;
  EXPECT_EQ(Call(too_many).status, kStatusInvalidParameter);
  VstorPacket create = Op(kOpCreateSubChannels);
  create.sub_channel_count = 2;
  EXPECT_EQ(Call(create).status, 0u);
  // Two offers (from the control thread): same class and instance,
  // sub-channel index 1 and 2.
  for (int i = 0; i < 5000 && controller_->sub_channels() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (uint16_t index : {1, 2}) {
    auto offer = guest_.Expect<vmbus::OfferChannel>(vmbus::kMsgOfferChannel);
    EXPECT_EQ(offer.offer.if_type, ScsiInterfaceType());
    EXPECT_EQ(offer.offer.if_instance, offers_[0].offer.if_instance);
    EXPECT_EQ(offer.offer.sub_channel_index, index);
  }
  EXPECT_EQ(controller_->sub_channels(), 2u);
}

// Issue 14: a controller saved with the VM (Quiesce, then SaveState per
// channel through the VMBus server) and restored into a fresh server and
// controller on the same guest memory and image, as a restored worker does:
// no re-initialization, the same channel, the disk's data, and I/O goes on.
TEST_F(StorvspTest, SaveAndRestoreKeepTheNegotiatedControllerAndItsChannel) {
  Build({{0, 0, false}});
  Initialize();
  for (uint32_t i = 0; i < 4096; ++i) Buffer()[i] = static_cast<uint8_t>(i * 3);
  ASSERT_EQ(Srb(Rw10(kWrite10, 8, 8), 4096, false).vm_srb.srb_status,
            kSrbStatusSuccess);
  ASSERT_TRUE(server_->QuiesceVsps(absl::Now() + absl::Seconds(5)).ok());
  absl::StatusOr<hvstack::saved::VmbusServerState> saved = server_->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_EQ(saved->channels_size(), 1);
  EXPECT_FALSE(saved->channels(0).vsp_state().empty());

  // The old worker's parts stay (unused) until the end of the test.
  std::unique_ptr<vmbus::VmbusServer> old_server = std::move(server_);
  std::unique_ptr<StorageController> old_controller = std::move(controller_);
  old_controller->Stop();
  server_ = std::make_unique<vmbus::VmbusServer>(
      guest_.memory, guest_, vmbus::VmbusServer::Options{.vp_count = 4});
  guest_.server = server_.get();
  base::ScopedFd fd(::open(path_.c_str(), O_RDWR));
  auto backend = UringFileBackend::Create(
      std::move(fd), {.name = path_, .size_bytes = kDiskBytes});
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<StorageController::Lun> luns(1);
  luns[0].backend = *std::move(backend);
  luns[0].properties.serial = "serial-1";
  auto c = StorageController::Create(
      guest_.memory,
      {.instance = vmbus::Guid::FromFields(1, 2, 3, {4, 5, 6, 7, 8, 9, 10, 11}),
       .add_channel = [this](vmbus::Vsp* vsp) { return server_->AddVsp(vsp); }},
      std::move(luns));
  ASSERT_TRUE(c.ok()) << c.status();
  controller_ = *std::move(c);
  ASSERT_TRUE(server_->AddVsp(controller_->primary()).ok());
  absl::Status restored = server_->RestoreState(*saved);
  ASSERT_TRUE(restored.ok()) << restored;
  ASSERT_TRUE(controller_->Start(nullptr).ok());
  EXPECT_TRUE(controller_->ready()) << "no re-initialization";
  EXPECT_EQ(controller_->protocol_version(), kVersionWin10);
  std::memset(Buffer(), 0, 4096);
  VstorPacket r = Srb(Rw10(kRead10, 8, 8), 4096, true);
  ASSERT_EQ(r.vm_srb.srb_status, kSrbStatusSuccess);
  for (uint32_t i = 0; i < 4096; ++i) {
    ASSERT_EQ(Buffer()[i], static_cast<uint8_t>(i * 3)) << "byte " << i;
  }

  // Damaged or foreign state is refused, naming storvsp and the problem.
  auto fresh = StorageController::Create(guest_.memory, {}, {});
  ASSERT_TRUE(fresh.ok());
  vmbus::Vsp* primary = (*fresh)->primary();
  absl::Status bad = primary->RestoreState(nullptr, "garbage");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("saved storvsp state"), std::string::npos);
  hvstack::saved::StorvspChannelState newer;
  newer.set_version(99);
  bad = primary->RestoreState(nullptr, newer.SerializeAsString());
  EXPECT_EQ(bad.code(), absl::StatusCode::kFailedPrecondition) << bad;
  hvstack::saved::StorvspChannelState odd;
  odd.set_version(1);
  odd.set_init_state(3);
  odd.set_protocol_version(0x1234);
  bad = primary->RestoreState(nullptr, odd.SerializeAsString());
  EXPECT_NE(bad.message().find("protocol version 0x1234"), std::string::npos)
      << bad;
  odd.set_protocol_version(kVersionWin10);
  odd.set_offered_sub_channels(3);  // this controller offers none
  bad = primary->RestoreState(nullptr, odd.SerializeAsString());
  EXPECT_NE(bad.message().find("sub-channels"), std::string::npos) << bad;
  odd.set_offered_sub_channels(0);
  odd.add_pending()->set_packet("short");
  bad = primary->RestoreState(nullptr, odd.SerializeAsString());
  EXPECT_NE(bad.message().find("a completion of 5 bytes"), std::string::npos)
      << bad;
  (*fresh)->Stop();
  old_server.reset();  // before its VSPs: it closes their channels
}

}  // namespace
}  // namespace vsp::storage
