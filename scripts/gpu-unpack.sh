# gpu-unpack.sh: sourced by scripts/gpu-check and scripts/gpu-serve on a GPU machine. Unpacks
# build-gpupack/pack.tar.xz (scripts/gpu-pack) into $pack and puts its libraries, and the CUDA 13
# runtime and cuBLASLt it links (the toolkit's, else wherever they are), on LD_LIBRARY_PATH.
# Sets pack and bin; returns non-zero when there is no pack to unpack.
pack=/tmp/skv-gpupack
bin=$pack/bin
rm -rf "$pack" && mkdir -p "$pack" && tar -C "$pack" -xJf build-gpupack/pack.tar.xz || return 1
export LD_LIBRARY_PATH=$pack/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for l in libcudart.so.13 libcublasLt.so.13; do
  if ! ldconfig -p | grep -q "$l" && [ ! -e "/usr/local/cuda/lib64/$l" ]; then
    f=$(find / -name "$l*" -not -path '/proc/*' 2>/dev/null | head -1)
    [ -n "$f" ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(dirname "$f")
  fi
done
return 0
