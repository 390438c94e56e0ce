#ifndef HVSTACK_VMWP_VSP_STORAGE_SCSI_SENSE_H_
#define HVSTACK_VMWP_VSP_STORAGE_SCSI_SENSE_H_

// SCSI status codes, sense keys and the sense data the disk returns with
// CHECK CONDITION (SPC-4 fixed format, 18 bytes: it fits storvsc's 20-byte
// sense buffer). Pure functions: no I/O, fuzzable.

#include <array>
#include <cstddef>
#include <cstdint>

namespace vsp::storage {

// SAM status.
inline constexpr uint8_t kScsiGood = 0x00;
inline constexpr uint8_t kScsiCheckCondition = 0x02;
inline constexpr uint8_t kScsiBusy = 0x08;

enum class SenseKey : uint8_t {
  kNoSense = 0x0,
  kNotReady = 0x2,
  kMediumError = 0x3,
  kHardwareError = 0x4,
  kIllegalRequest = 0x5,
  kUnitAttention = 0x6,
  kDataProtect = 0x7,
  kAbortedCommand = 0xB,
};

// One sense condition: key + additional sense code and qualifier.
struct Sense {
  SenseKey key = SenseKey::kNoSense;
  uint8_t asc = 0;
  uint8_t ascq = 0;
  // Optional INFORMATION field (e.g. the first LBA in error); valid if set.
  bool info_valid = false;
  uint32_t info = 0;
  bool operator==(const Sense&) const = default;
};

// The conditions this disk reports.
inline constexpr Sense kSenseInvalidOpcode{SenseKey::kIllegalRequest, 0x20,
                                           0x00};
inline constexpr Sense kSenseLbaOutOfRange{SenseKey::kIllegalRequest, 0x21,
                                           0x00};
inline constexpr Sense kSenseInvalidFieldInCdb{SenseKey::kIllegalRequest, 0x24,
                                               0x00};
inline constexpr Sense kSenseLunNotSupported{SenseKey::kIllegalRequest, 0x25,
                                             0x00};
inline constexpr Sense kSenseInvalidFieldInParameterList{
    SenseKey::kIllegalRequest, 0x26, 0x00};
inline constexpr Sense kSenseParameterListLengthError{SenseKey::kIllegalRequest,
                                                      0x1A, 0x00};
inline constexpr Sense kSenseSavingParametersNotSupported{
    SenseKey::kIllegalRequest, 0x39, 0x00};
inline constexpr Sense kSenseWriteProtected{SenseKey::kDataProtect, 0x27, 0x00};
inline constexpr Sense kSenseUnrecoveredReadError{SenseKey::kMediumError, 0x11,
                                                  0x00};
inline constexpr Sense kSenseWriteError{SenseKey::kMediumError, 0x0C, 0x00};
// Internal target failure: the backend failed in a way that is not the
// medium's (e.g. the NBD server went away).
inline constexpr Sense kSenseInternalTargetFailure{SenseKey::kHardwareError,
                                                   0x44, 0x00};

inline constexpr size_t kFixedSenseSize = 18;

// SPC-4 4.5.3 fixed-format sense data, current error (response code 0x70).
std::array<uint8_t, kFixedSenseSize> BuildFixedSense(const Sense& sense);

// Reads back key/ASC/ASCQ from fixed- or descriptor-format sense data, as
// Linux's scsi_normalize_sense does; false if `bytes` is not sense data.
bool ParseSense(const uint8_t* bytes, size_t size, Sense* out);

}  // namespace vsp::storage

#endif  // HVSTACK_VMWP_VSP_STORAGE_SCSI_SENSE_H_
