#include "vmwp/vsp/storage/scsi_sense.h"

namespace vsp::storage {

std::array<uint8_t, kFixedSenseSize> BuildFixedSense(const Sense& sense) {
  std::array<uint8_t, kFixedSenseSize> b{};
  b[0] = 0x70 | (sense.info_valid ? 0x80 : 0x00);  // VALID | current, fixed
  b[2] = static_cast<uint8_t>(sense.key) & 0x0F;
  b[3] = static_cast<uint8_t>(sense.info >> 24);
  b[4] = static_cast<uint8_t>(sense.info >> 16);
  b[5] = static_cast<uint8_t>(sense.info >> 8);
  b[6] = static_cast<uint8_t>(sense.info);
  b[7] = kFixedSenseSize - 8;  // additional sense length
  b[12] = sense.asc;
  b[13] = sense.ascq;
  return b;
}

bool ParseSense(const uint8_t* bytes, size_t size, Sense* out) {
  if (size < 1) return false;
  const uint8_t code = bytes[0] & 0x7F;
  if (code == 0x70 || code == 0x71) {  // fixed format
    if (size < 14) return false;
    out->key = static_cast<SenseKey>(bytes[2] & 0x0F);
    out->asc = bytes[12];
    out->ascq = bytes[13];
    out->info_valid = (bytes[0] & 0x80) != 0;
    out->info = uint32_t{bytes[3]} << 24 | uint32_t{bytes[4]} << 16 |
                uint32_t{bytes[5]} << 8 | bytes[6];
    return true;
  }
  if (code == 0x72 || code == 0x73) {  // descriptor format
    if (size < 4) return false;
    out->key = static_cast<SenseKey>(bytes[1] & 0x0F);
    out->asc = bytes[2];
    out->ascq = bytes[3];
    out->info_valid = false;
    out->info = 0;
    return true;
  }
  return false;
}

}  // namespace vsp::storage
