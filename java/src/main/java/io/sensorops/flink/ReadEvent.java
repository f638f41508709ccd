package io.sensorops.flink;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * The stream job's native fast path: one raw Kafka record decoded as {@code sensorops.events.read_events} decodes it,
 * but only when that is certain. It returns the flat event where Python would accept the record with exactly these
 * values, and NULL ("undecided") for anything else: the job hands undecided records to the Python UDF, which stays
 * the one definition of what is valid and of every dead-letter reason. So this class accepts, it never rejects, and
 * every doubtful case (a number where Python would format text, an integer beyond 2^53, a timestamp near the clock's
 * limit, deep nesting, ...) is left to Python.
 *
 * <p>{@code format} is a JSON literal written by {@code sensorops.stream.native.format_literal}: the EventFormat
 * (channel bounds, context) and the limits, so that their values live in Python only. It is constant per job and
 * parsed once.
 */
public class ReadEvent extends ScalarFunction {

    private static final JsonFactory JSON = JsonFactory.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION) // orjson keeps the last of duplicate keys: undecided
            .disable(JsonFactory.Feature.INTERN_FIELD_NAMES) // keys come from anyone: do not intern them
            .build();
    private static final int MAX_DEPTH = 16; // an event needs 3; orjson allows 1024: deeper is undecided
    private static final long MAX_EXACT = 1L << 53; // larger integers are not exact as doubles

    /** Thrown (without a stack trace) for a record this class leaves to Python. */
    private static final class Undecided extends RuntimeException {
        Undecided() {
            super(null, null, false, false);
        }
    }

    private static final Undecided UNDECIDED = new Undecided();

    /** The parsed {@code format} literal (a job has one). */
    private static final class Format {
        final String text;
        final String[] channels;
        final double[] lo;
        final double[] hi;
        final boolean context;
        final long maxValueBytes;
        final long maxKeyBytes;
        final long earliestMs;
        final long aheadMs; // max_ahead_ms less the clock margin
        final Pattern timestamp;

        Format(String text) {
            this.text = text;
            Map<String, Object> f;
            try {
                f = parse(text.getBytes(StandardCharsets.UTF_8));
            } catch (java.io.IOException | Undecided e) {
                throw new IllegalArgumentException("ReadEvent's format is not a JSON object: " + text);
            }
            List<?> bounds = (List<?>) f.get("bounds");
            int n = bounds.size();
            channels = new String[n];
            lo = new double[n];
            hi = new double[n];
            for (int i = 0; i < n; i++) {
                List<?> b = (List<?>) bounds.get(i);
                channels[i] = (String) b.get(0);
                lo[i] = ((Number) b.get(1)).doubleValue();
                hi[i] = ((Number) b.get(2)).doubleValue();
            }
            context = (Boolean) f.get("context");
            maxValueBytes = ((Number) f.get("max_value_bytes")).longValue();
            maxKeyBytes = ((Number) f.get("max_key_bytes")).longValue();
            earliestMs = ((Number) f.get("earliest_ms")).longValue();
            aheadMs = ((Number) f.get("max_ahead_ms")).longValue() - ((Number) f.get("margin_ms")).longValue();
            timestamp = Pattern.compile((String) f.get("timestamp_pattern"));
        }
    }

    private transient Format format;

    @Override
    public boolean isDeterministic() {
        return false; // it reads the clock (and the planner must not call it once per field it projects)
    }

    public @DataTypeHint("ROW<sensor_id STRING, event_ms BIGINT, readings ARRAY<DOUBLE>, is_anomaly BOOLEAN, "
            + "anomaly_type STRING, building STRING, floor INT, room STRING, device_model STRING, "
            + "firmware_version STRING, battery_level DOUBLE>") Row eval(byte[] payload, byte[] key, String format) {
        Format fmt = this.format;
        if (fmt == null || !(fmt.text == format || fmt.text.equals(format))) {
            fmt = this.format = new Format(format); // a bad format fails the job: it is the caller's mistake
        }
        try {
            return read(payload, key, fmt);
        } catch (java.io.IOException | RuntimeException e) { // Undecided, or anything unforeseen
            return null; // not certain: Python decides
        }
    }

    /** `_read`, for the records whose outcome is certain. */
    private static Row read(byte[] payload, byte[] key, Format fmt) throws java.io.IOException {
        if (payload == null || payload.length > fmt.maxValueBytes || (key != null && key.length > fmt.maxKeyBytes)) {
            throw UNDECIDED; // too_large, or invalid_json for no value
        }
        Map<String, Object> obj = parse(payload);
        Object sensorId = obj.get("sensor_id");
        Object stamp = obj.get("timestamp");
        if (!(sensorId instanceof String) || ((String) sensorId).isEmpty() || !(stamp instanceof String)) {
            throw UNDECIDED; // missing_field or wrong_type
        }
        long ms = epochMs((String) stamp, fmt);
        if (ms < fmt.earliestMs || ms > System.currentTimeMillis() + fmt.aheadMs) {
            throw UNDECIDED; // out_of_range, or too close to the limit to be sure of Python's clock
        }
        Double[] readings = new Double[fmt.channels.length];
        for (int i = 0; i < readings.length; i++) { // a number, null or absent, within its bounds
            Object value = obj.get(fmt.channels[i]);
            if (value != null) {
                double d = number(value);
                if (!(fmt.lo[i] <= d && d <= fmt.hi[i])) {
                    throw UNDECIDED; // out_of_range
                }
                readings[i] = d;
            }
        }
        Object anomaly = obj.get("is_anomaly");
        boolean isAnomaly = Boolean.TRUE.equals(anomaly) || "true".equals(anomaly);
        String kind = text(obj.get("anomaly_type"));
        kind = kind == null || kind.isEmpty() ? "none" : kind; // `_text(...) or "none"`
        if (!fmt.context) {
            return Row.of(sensorId, ms, readings, isAnomaly, kind, null, null, null, null, null, null);
        }
        // `_flat_row`: location and device_info of the wrong type read as empty, their fields of the wrong type as null
        Map<?, ?> location = obj.get("location") instanceof Map ? (Map<?, ?>) obj.get("location") : Map.of();
        Map<?, ?> device = obj.get("device_info") instanceof Map ? (Map<?, ?>) obj.get("device_info") : Map.of();
        Object floor = location.get("floor");
        Integer floorInt = null; // an integer within 32 bits, else null (a float, a bool, a string, ...)
        if (floor instanceof Long && (Long) floor >= Integer.MIN_VALUE && (Long) floor <= Integer.MAX_VALUE) {
            floorInt = ((Long) floor).intValue();
        }
        Object battery = device.get("battery_level");
        Double batteryLevel = battery instanceof Long || battery instanceof Double ? number(battery) : null;
        return Row.of(sensorId, ms, readings, isAnomaly, kind, text(location.get("building")), floorInt,
                text(location.get("room")), text(device.get("model")), text(device.get("firmware_version")),
                batteryLevel);
    }

    /** `float(value)` of a JSON number (not a bool); any other type is wrong_type in Python. */
    private static double number(Object value) {
        if (value instanceof Double) {
            return (Double) value; // finite: `parse` let no other through
        }
        if (value instanceof Long && Math.abs((Long) value) <= MAX_EXACT) {
            return (double) (Long) value;
        }
        throw UNDECIDED;
    }

    /** `_text`: a string, or a bool as "true"/"false"; null for null, an object or an array. A number is left to
     * Python, whose str(float) this does not reproduce. */
    private static String text(Object value) {
        if (value instanceof String) {
            return (String) value;
        }
        if (value instanceof Boolean) {
            return (Boolean) value ? "true" : "false";
        }
        if (value instanceof Long || value instanceof Double) {
            throw UNDECIDED;
        }
        return null;
    }

    /** `epoch_ms`: TIMESTAMP_PATTERN matched whole, a real date and time (UTC), the fraction truncated to ms. */
    private static long epochMs(String value, Format fmt) {
        if (!fmt.timestamp.matcher(value).matches()) {
            throw UNDECIDED;
        }
        int year = Integer.parseInt(value.substring(0, 4));
        if (year < 1) {
            throw UNDECIDED; // Python's datetime starts at year 1
        }
        LocalDateTime base = LocalDateTime.of(year, Integer.parseInt(value.substring(5, 7)),
                Integer.parseInt(value.substring(8, 10)), Integer.parseInt(value.substring(11, 13)),
                Integer.parseInt(value.substring(14, 16)), Integer.parseInt(value.substring(17, 19)));
        String frac = value.substring(Math.min(20, value.length() - 1), value.length() - 1);
        int ms = frac.isEmpty() ? 0 : Integer.parseInt((frac + "000").substring(0, 3));
        return base.toEpochSecond(ZoneOffset.UTC) * 1000 + ms;
    }

    // -- JSON: what orjson.loads accepts, as plain values (String, Boolean, Long, Double, null, Map, List) ---------

    /** One JSON object, the whole payload: strict UTF-8, nothing after it; else undecided. */
    private static Map<String, Object> parse(byte[] payload) throws java.io.IOException {
        boolean ascii = true;
        for (byte b : payload) { // control characters are JSON nowhere unescaped (and a NUL would make Jackson guess
            if (b < 0x20 && b >= 0 && b != '\t' && b != '\n' && b != '\r') { // UTF-16)
                throw UNDECIDED;
            }
            ascii &= b >= 0;
        }
        if (!ascii) {
            if (payload.length >= 3 && payload[0] == (byte) 0xEF && payload[1] == (byte) 0xBB
                    && payload[2] == (byte) 0xBF) {
                throw UNDECIDED; // a BOM, which Jackson would skip and orjson rejects
            }
            try { // Java's decoder is strict: no overlong forms, no encoded surrogates, nothing past U+10FFFF
                StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(payload));
            } catch (CharacterCodingException e) {
                throw UNDECIDED; // invalid_encoding
            }
        }
        try (JsonParser p = JSON.createParser(payload)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw UNDECIDED; // invalid_json: not an object
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> obj = (Map<String, Object>) value(p, JsonToken.START_OBJECT, 1);
            if (p.nextToken() != null) {
                throw UNDECIDED; // trailing tokens
            }
            return obj;
        }
    }

    private static Object value(JsonParser p, JsonToken t, int depth) throws java.io.IOException {
        switch (t) {
            case START_OBJECT: {
                if (depth > MAX_DEPTH) {
                    throw UNDECIDED;
                }
                Map<String, Object> map = new HashMap<>();
                while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                    String name = clean(p.currentName());
                    map.put(name, value(p, p.nextToken(), depth + 1));
                }
                if (t != JsonToken.END_OBJECT) {
                    throw UNDECIDED;
                }
                return map;
            }
            case START_ARRAY:
                if (depth > MAX_DEPTH) {
                    throw UNDECIDED;
                }
                List<Object> list = new ArrayList<>();
                while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
                    if (t == null) {
                        throw UNDECIDED;
                    }
                    list.add(value(p, t, depth + 1));
                }
                return list;
            case VALUE_STRING:
                return clean(p.getText());
            case VALUE_NUMBER_INT:
                if (p.getNumberType() == JsonParser.NumberType.BIG_INTEGER) {
                    throw UNDECIDED; // orjson reads it as a float
                }
                return p.getLongValue();
            case VALUE_NUMBER_FLOAT: {
                double d = p.getDoubleValue();
                if (!Double.isFinite(d)) {
                    throw UNDECIDED; // invalid_json for orjson (1e400)
                }
                return d;
            }
            case VALUE_TRUE:
                return Boolean.TRUE;
            case VALUE_FALSE:
                return Boolean.FALSE;
            case VALUE_NULL:
                return null;
            default:
                throw UNDECIDED;
        }
    }

    /** A string or key with no unpaired surrogate (from `\\uD800` escapes: orjson rejects them). */
    private static String clean(String s) {
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                throw UNDECIDED;
            }
        }
        return s;
    }
}
