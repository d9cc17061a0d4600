// Maintenance windows: new offers start only inside the window, in UTC or in the device's own
// time zone (its `timezone` attribute, an IANA name). Devices already installing are never
// stopped by a window closing; the window gates the start of an install, not its end.
import type { MaintenanceWindow } from './model.js';

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

export function parseWindowTime(text: string): number | undefined {
  const m = HHMM.exec(text);
  return m === null ? undefined : Number(m[1]) * 60 + Number(m[2]);
}

/** Problems with a window, for the API's 400 answer; undefined when it is valid. */
export function validateWindow(w: MaintenanceWindow): string | undefined {
  if (parseWindowTime(w.start) === undefined)
    return `maintenanceWindow.start must be "HH:MM", found "${w.start}"`;
  if (parseWindowTime(w.end) === undefined) return `maintenanceWindow.end must be "HH:MM", found "${w.end}"`;
  if (w.start === w.end) return 'maintenanceWindow.start and end are equal: the window would never open';
  for (const d of w.days ?? [])
    if (!Number.isInteger(d) || d < 0 || d > 6) return `maintenanceWindow.days holds ${d}, expected 0..6`;
  return undefined;
}

const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };
const formatters = new Map<string, Intl.DateTimeFormat | null>();

/** Minutes since local midnight and weekday in `timeZone`; UTC when the zone is unknown. */
export function localClock(now: Date, timeZone: string | undefined): { minutes: number; weekday: number } {
  let fmt: Intl.DateTimeFormat | null | undefined = null;
  if (timeZone !== undefined && timeZone !== 'UTC') {
    fmt = formatters.get(timeZone);
    if (fmt === undefined) {
      try {
        fmt = new Intl.DateTimeFormat('en-US', {
          timeZone,
          hourCycle: 'h23',
          hour: '2-digit',
          minute: '2-digit',
          weekday: 'short',
        });
      } catch {
        fmt = null; // not an IANA zone: fall back to UTC rather than never opening
      }
      if (formatters.size < 1000) formatters.set(timeZone, fmt);
    }
  }
  if (fmt === null || fmt === undefined)
    return { minutes: now.getUTCHours() * 60 + now.getUTCMinutes(), weekday: now.getUTCDay() };
  let hour = 0;
  let minute = 0;
  let weekday = 0;
  for (const part of fmt.formatToParts(now)) {
    if (part.type === 'hour') hour = Number(part.value);
    else if (part.type === 'minute') minute = Number(part.value);
    else if (part.type === 'weekday') weekday = WEEKDAYS[part.value] ?? 0;
  }
  return { minutes: hour * 60 + minute, weekday };
}

/** Whether the window is open at `now` for a device in `deviceTimeZone`. No window = always open. */
export function windowOpen(
  window: MaintenanceWindow | null | undefined,
  now: Date,
  deviceTimeZone: string | undefined,
): boolean {
  if (window === null || window === undefined) return true;
  const start = parseWindowTime(window.start);
  const end = parseWindowTime(window.end);
  if (start === undefined || end === undefined) return false; // fail closed on a corrupt window
  const { minutes, weekday } = localClock(
    now,
    window.timezone === 'device-local' ? deviceTimeZone : undefined,
  );
  const days = window.days;
  if (start < end) return minutes >= start && minutes < end && (days === undefined || days.includes(weekday));
  // Crosses midnight: the part after midnight belongs to the previous day's window.
  if (minutes >= start) return days === undefined || days.includes(weekday);
  if (minutes < end) return days === undefined || days.includes((weekday + 6) % 7);
  return false;
}
