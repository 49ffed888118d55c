// Emscripten JS library: the JavaScript half of piimg_io.c. `Module.piimgIo`
// is installed by @piimg/wasm before any device is opened; it maps device
// handles to BlockDevice objects. Exceptions never cross into C: they are
// kept in `Module.piimgIo.lastError` and reported as a non-zero result.
mergeInto(LibraryManager.library, {
  piimg_js_read: function (device, byteOffset, ptr, length) {
    var io = Module['piimgIo'];
    try {
      var bytes = io.read(device, byteOffset, length);
      if (bytes.length !== length) throw new Error('short read from block device');
      HEAPU8.set(bytes, ptr);
      return 0;
    } catch (error) {
      io.lastError = error;
      return 1;
    }
  },
  piimg_js_write: function (device, byteOffset, ptr, length) {
    var io = Module['piimgIo'];
    try {
      io.write(device, byteOffset, HEAPU8.subarray(ptr, ptr + length));
      return 0;
    } catch (error) {
      io.lastError = error;
      return 1;
    }
  },
  piimg_js_size: function (device) {
    var io = Module['piimgIo'];
    try {
      return io.size(device);
    } catch (error) {
      io.lastError = error;
      return -1;
    }
  },
  piimg_js_flush: function (device) {
    var io = Module['piimgIo'];
    try {
      io.flush(device);
      return 0;
    } catch (error) {
      io.lastError = error;
      return 1;
    }
  },
});
