#include "vmwp/devices/cmos_rtc.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"

namespace vmwp {
namespace {

uint32_t OpenBus(uint8_t size) {
  return size >= 4 ? 0xFFFFFFFFu : (size == 2 ? 0xFFFFu : 0xFFu);
}

int WeekdayRegister(absl::Weekday wd) {
  // The RTC counts 1 = Sunday .. 7 = Saturday.
  switch (wd) {
    case absl::Weekday::sunday:
      return 1;
    case absl::Weekday::monday:
      return 2;
    case absl::Weekday::tuesday:
      return 3;
    case absl::Weekday::wednesday:
      return 4;
    case absl::Weekday::thursday:
      return 5;
    case absl::Weekday::friday:
      return 6;
    case absl::Weekday::saturday:
      return 7;
  }
  return 1;
}

// Seconds since the epoch, floored (also for times before 1970).
int64_t FloorSeconds(absl::Time t) {
  return absl::ToUnixSeconds(t);  // rounds towards negative infinity
}

}  // namespace

CmosRtc::CmosRtc(Clock clock) : clock_(std::move(clock)) {
  absl::MutexLock lock(&mu_);
  ram_[kRegA] = kADefault;
  ram_[kRegB] = kBDefault;
  offset_ = absl::ZeroDuration();
  last_c_read_ = NowLocked();
}

CmosRtc::CmosRtc(const Persistent& saved, Clock clock)
    : clock_(std::move(clock)) {
  absl::MutexLock lock(&mu_);
  ram_ = saved.ram;
  offset_ = saved.offset;
  // A reset does not clear SET, but the held registers are not part of the
  // persistent state: resume the clock.
  ram_[kRegB] &= static_cast<uint8_t>(~kBSet);
  last_c_read_ = NowLocked();
}

CmosRtc::Persistent CmosRtc::Save() const {
  absl::MutexLock lock(&mu_);
  return Persistent{ram_, offset_};
}

absl::Time CmosRtc::NowLocked() const { return clock_() + offset_; }

absl::Time CmosRtc::GuestTime() const {
  absl::MutexLock lock(&mu_);
  if (ram_[kRegB] & kBSet) {
    return absl::FromCivil(
        absl::CivilSecond(held_.year, held_.month, held_.day, held_.hour,
                          held_.minute, held_.second),
        absl::UTCTimeZone());
  }
  return NowLocked();
}

bool CmosRtc::nmi_disabled() const {
  absl::MutexLock lock(&mu_);
  return nmi_disabled_;
}

CmosRtc::Fields CmosRtc::CurrentFields() const {
  if (ram_[kRegB] & kBSet) return held_;
  const absl::CivilSecond cs =
      absl::ToCivilSecond(NowLocked(), absl::UTCTimeZone());
  Fields f;
  f.year = cs.year();
  f.month = cs.month();
  f.day = cs.day();
  f.hour = cs.hour();
  f.minute = cs.minute();
  f.second = cs.second();
  f.weekday = WeekdayRegister(absl::GetWeekday(cs));
  return f;
}

uint8_t CmosRtc::Encode(int value) const {
  value &= 0xFF;
  if (ram_[kRegB] & kBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) % 10) << 4 | (value % 10));
}

int CmosRtc::Decode(uint8_t value) const {
  if (ram_[kRegB] & kBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0F);
}

uint8_t CmosRtc::EncodeHour(int hour) const {
  if (ram_[kRegB] & kB24Hour) return Encode(hour);
  const int h12 = hour % 12 == 0 ? 12 : hour % 12;
  return static_cast<uint8_t>(Encode(h12) | (hour >= 12 ? 0x80 : 0));
}

int CmosRtc::DecodeHour(uint8_t value) const {
  if (ram_[kRegB] & kB24Hour) return Decode(value);
  const bool pm = value & 0x80;
  return Decode(value & 0x7F) % 12 + (pm ? 12 : 0);
}

void CmosRtc::SetClock(const Fields& f) {
  // CivilSecond normalises out-of-range fields (e.g. day 31 of February rolls
  // over), so any byte a guest writes gives some valid time.
  const absl::Time t = absl::FromCivil(
      absl::CivilSecond(f.year, f.month, f.day, f.hour, f.minute, f.second),
      absl::UTCTimeZone());
  offset_ = t - clock_();
}

uint8_t CmosRtc::ReadRegC() {
  const absl::Time now = NowLocked();
  uint8_t c = 0;
  const bool updating =
      !(ram_[kRegB] & kBSet) && ((ram_[kRegA] >> 4) & 0x7) == 0x2;
  if (updating && FloorSeconds(now) != FloorSeconds(last_c_read_)) c |= kCUf;
  const int rate = ram_[kRegA] & 0x0F;
  if (rate != 0 && updating) {
    // Rates 1 and 2 are 256 and 128 Hz; 3..15 are 32768 >> (rate - 1).
    const int hz = rate <= 2 ? (256 >> (rate - 1)) : (32768 >> (rate - 1));
    const absl::Duration period = absl::Seconds(1) / hz;
    absl::Duration rem;
    if (absl::IDivDuration(now - absl::UnixEpoch(), period, &rem) !=
        absl::IDivDuration(last_c_read_ - absl::UnixEpoch(), period, &rem)) {
      c |= kCPf;
    }
  }
  const uint8_t b = ram_[kRegB];
  if (((c & kCUf) && (b & kBUie)) || ((c & kCPf) && (b & kBPie))) c |= kCIrqf;
  last_c_read_ = now;
  return c;
}

uint8_t CmosRtc::Read(uint8_t index) {
  switch (index) {
    case kSeconds:
      return Encode(CurrentFields().second);
    case kMinutes:
      return Encode(CurrentFields().minute);
    case kHours:
      return EncodeHour(CurrentFields().hour);
    case kDayOfWeek:
      return Encode(CurrentFields().weekday);
    case kDayOfMonth:
      return Encode(CurrentFields().day);
    case kMonth:
      return Encode(CurrentFields().month);
    case kYear: {
      const int64_t y = CurrentFields().year;
      return Encode(static_cast<int>(((y % 100) + 100) % 100));
    }
    case kCentury: {
      const int64_t y = CurrentFields().year;
      return Encode(static_cast<int>(y >= 0 ? (y / 100) % 100 : 0));
    }
    case kRegA: {
      uint8_t a = ram_[kRegA] & 0x7F;
      if (!(ram_[kRegB] & kBSet) && ((a >> 4) & 0x7) == 0x2) {
        const absl::Time now = NowLocked();
        const absl::Duration into_second =
            now - absl::FromUnixSeconds(FloorSeconds(now));
        if (into_second >= absl::Seconds(1) - kUipWindow) a |= kAUip;
      }
      return a;
    }
    case kRegC:
      return ReadRegC();
    case kRegD:
      return kDValid;
    default:
      return ram_[index];
  }
}

void CmosRtc::Write(uint8_t index, uint8_t value) {
  auto set_field = [&](auto update) {
    Fields f = CurrentFields();
    update(f);
    if (ram_[kRegB] & kBSet) {
      held_ = f;
    } else {
      SetClock(f);
    }
  };
  switch (index) {
    case kSeconds:
      set_field([&](Fields& f) { f.second = Decode(value & 0x7F); });
      return;
    case kMinutes:
      set_field([&](Fields& f) { f.minute = Decode(value & 0x7F); });
      return;
    case kHours:
      set_field([&](Fields& f) { f.hour = DecodeHour(value); });
      return;
    case kDayOfWeek:
      // Derived from the date while the clock runs; held only while SET.
      if (ram_[kRegB] & kBSet) held_.weekday = Decode(value);
      return;
    case kDayOfMonth:
      set_field([&](Fields& f) { f.day = Decode(value); });
      return;
    case kMonth:
      set_field([&](Fields& f) { f.month = Decode(value); });
      return;
    case kYear:
      set_field([&](Fields& f) {
        f.year = f.year - ((f.year % 100) + 100) % 100 + Decode(value) % 100;
      });
      return;
    case kCentury:
      set_field([&](Fields& f) {
        f.year = int64_t{Decode(value)} * 100 + ((f.year % 100) + 100) % 100;
      });
      return;
    case kRegA:
      ram_[kRegA] = value & 0x7F;  // UIP is read-only.
      return;
    case kRegB: {
      const uint8_t old = ram_[kRegB];
      if (!(old & kBSet) && (value & kBSet)) {
        // Updates stop: the registers keep the time of this moment.
        held_ = CurrentFields();
      }
      // Setting SET also clears UIE, as on the MC146818.
      ram_[kRegB] = (value & kBSet) ? (value & ~kBUie) : value;
      if ((old & kBSet) && !(value & kBSet)) SetClock(held_);
      return;
    }
    case kRegC:
    case kRegD:
      return;  // Read-only.
    default:
      ram_[index] = value;
      return;
  }
}

uint32_t CmosRtc::PortRead(uint16_t port, uint8_t size) {
  if (size != 1) return OpenBus(size);
  absl::MutexLock lock(&mu_);
  // The index register is write-only on a PC.
  if (port != kDataPort) return 0xFF;
  return Read(index_);
}

void CmosRtc::PortWrite(uint16_t port, uint8_t size, uint32_t value) {
  if (size != 1) return;
  absl::MutexLock lock(&mu_);
  if (port == kIndexPort) {
    index_ = value & 0x7F;
    nmi_disabled_ = (value & 0x80) != 0;
  } else if (port == kDataPort) {
    Write(index_, static_cast<uint8_t>(value));
  }
}

hvstack::saved::CmosRtcState CmosRtc::SaveState() const {
  absl::MutexLock lock(&mu_);
  hvstack::saved::CmosRtcState out;
  out.set_version(1);
  out.set_ram(std::string(ram_.begin(), ram_.end()));
  out.set_offset_us(absl::ToInt64Microseconds(offset_));
  out.set_held_year(held_.year);
  out.set_held_month(held_.month);
  out.set_held_day(held_.day);
  out.set_held_hour(held_.hour);
  out.set_held_minute(held_.minute);
  out.set_held_second(held_.second);
  out.set_held_weekday(held_.weekday);
  out.set_index(index_);
  out.set_nmi_disabled(nmi_disabled_);
  out.set_last_c_read_us(absl::ToUnixMicros(last_c_read_));
  return out;
}

absl::Status CmosRtc::RestoreState(const hvstack::saved::CmosRtcState& state) {
  auto bad = [](absl::string_view field, int64_t value) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "saved CMOS RTC state: %s %d is out of range", field, value));
  };
  if (state.version() != 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "saved CMOS RTC state format version %d; this worker reads 1",
        state.version()));
  }
  if (state.ram().size() != 128) return bad("RAM size", state.ram().size());
  if (state.index() > 0x7F) return bad("index", state.index());
  if (state.held_year() < 0 || state.held_year() > 9999)
    return bad("held year", state.held_year());
  if (state.held_month() < 1 || state.held_month() > 12)
    return bad("held month", state.held_month());
  if (state.held_day() < 1 || state.held_day() > 31)
    return bad("held day", state.held_day());
  if (state.held_hour() < 0 || state.held_hour() > 23)
    return bad("held hour", state.held_hour());
  if (state.held_minute() < 0 || state.held_minute() > 59)
    return bad("held minute", state.held_minute());
  if (state.held_second() < 0 || state.held_second() > 59)
    return bad("held second", state.held_second());
  if (state.held_weekday() < 1 || state.held_weekday() > 7)
    return bad("held weekday", state.held_weekday());
  // A clock more than 200 years from the host's is not one a guest set.
  constexpr int64_t kMaxOffsetUs = int64_t{200} * 366 * 24 * 3600 * 1000000;
  if (state.offset_us() > kMaxOffsetUs || state.offset_us() < -kMaxOffsetUs)
    return bad("clock offset (us)", state.offset_us());
  absl::MutexLock lock(&mu_);
  std::copy(state.ram().begin(), state.ram().end(), ram_.begin());
  offset_ = absl::Microseconds(state.offset_us());
  held_ = Fields{.year = state.held_year(),
                 .month = state.held_month(),
                 .day = state.held_day(),
                 .hour = state.held_hour(),
                 .minute = state.held_minute(),
                 .second = state.held_second(),
                 .weekday = state.held_weekday()};
  index_ = static_cast<uint8_t>(state.index());
  nmi_disabled_ = state.nmi_disabled();
  // Register C's flags are computed from when it was last read; a time from
  // the file that is in the future would hold them off for that long.
  last_c_read_ =
      std::min(absl::FromUnixMicros(state.last_c_read_us()), NowLocked());
  return absl::OkStatus();
}

}  // namespace vmwp
