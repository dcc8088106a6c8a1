// An ONNX file's own description, read without the runtime: the ModelProto's top-level fields
// (protobuf wire format), enough to tell an ONNX model from any other file and to read its
// metadata_props (stylenet writes style_name, styles, arch there). onnxruntime-web has no API
// for the metadata, and failing here gives a clearer message than a session that will not build.

const FIELD = { irVersion: 1, graph: 7, opsetImport: 8, metadataProps: 14 };

function reader(bytes) {
  let pos = 0;
  const varint = () => {
    let value = 0, scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= bytes.length) throw new Error('truncated');
      const b = bytes[pos++];
      value += (b & 0x7f) * scale;
      if (!(b & 0x80)) return value;
      scale *= 128;
    }
    throw new Error('bad varint');
  };
  const fields = function* () {
    while (pos < bytes.length) {
      const key = varint();
      const number = Math.floor(key / 8), wire = key % 8;
      if (number === 0) throw new Error('field 0');
      if (wire === 0) yield [number, varint()];
      else if (wire === 1) { pos += 8; yield [number, null]; }
      else if (wire === 5) { pos += 4; yield [number, null]; }
      else if (wire === 2) {
        const length = varint();
        if (pos + length > bytes.length) throw new Error('truncated');
        yield [number, bytes.subarray(pos, pos + length)];
        pos += length;
      } else throw new Error(`wire type ${wire}`);
      if (pos > bytes.length) throw new Error('truncated');
    }
  };
  return { fields };
}

/** {metadata: {key: value}} of an ONNX model's bytes; throws Error(reason) when they are not one. */
export function readOnnx(buffer) {
  const bytes = new Uint8Array(buffer);
  const text = new TextDecoder();
  const metadata = {};
  const seen = new Set();
  try {
    for (const [number, value] of reader(bytes).fields()) {
      seen.add(number);
      if (number === FIELD.metadataProps && value) {
        let key = '', val = '';
        for (const [n, v] of reader(value).fields()) {
          if (n === 1 && v) key = text.decode(v);
          if (n === 2 && v) val = text.decode(v);
        }
        metadata[key] = val;
      }
    }
  } catch (err) {
    throw new Error(`not an ONNX model (${err.message} in its protobuf)`);
  }
  if (!seen.has(FIELD.irVersion) || !seen.has(FIELD.graph)) throw new Error('not an ONNX model (no IR version or graph)');
  return { metadata };
}

/** The styles a stylenet network paints: its `styles` list, else its one `style_name`. */
export function stylesOf(metadata, fallback) {
  try {
    const list = JSON.parse(metadata.styles || 'null');
    if (Array.isArray(list) && list.length) return list.map(String);
  } catch { /* not JSON: the one style below */ }
  return [metadata.style_name || fallback];
}

/** Whether a network is the real-time kind (its body at half size: arch.shuffle > 1). */
export function isRealtime(metadata) {
  try { return Number(JSON.parse(metadata.arch || '{}').shuffle || 1) > 1; } catch { return false; }
}
