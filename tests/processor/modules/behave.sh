# A container test module (busybox sh): behaviour from process.settings in task.json.
# copy: copy the input to the output and write result.json; fail: exit 1; hang: sleep;
# probe: try what a confined module must not do, and report in result.json what was allowed.
settings=$(tr -d '\n' < "$MERCURE_IN_DIR/task.json")
value() { echo "$settings" | sed -n "s/.*\"settings\": *{[^}]*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }
behaviour=$(value behaviour)
echo "container module starts: ${behaviour:-copy} as $(id -u)"
case "$behaviour" in
  fail) echo "container failure" >&2; exit 1 ;;
  hang) exec sleep 3600 ;;
  probe)
    attempt() { if "$@" >/dev/null 2>&1; then echo allowed; else echo denied; fi; }
    echo probe > "$MERCURE_OUT_DIR/owned"
    status() { sed -n "s/^$1:[[:space:]]*//p" /proc/self/status; }
    printf '{"root_write": "%s", "tmp_write": "%s", "out_write": "%s", "chown": "%s", ' \
      "$(attempt touch /escape)" "$(attempt touch /tmp/scratch)" \
      "$(attempt touch "$MERCURE_OUT_DIR/written")" \
      "$(attempt chown 4321:4321 "$MERCURE_OUT_DIR/owned")" > "$MERCURE_OUT_DIR/result.json"
    printf '"chroot": "%s", "no_new_privs": "%s", "cap_eff": "%s", "uid": "%s"}\n' \
      "$(attempt chroot / /bin/true)" "$(status NoNewPrivs)" "$(status CapEff)" "$(id -u)" \
      >> "$MERCURE_OUT_DIR/result.json"
    cat "$MERCURE_OUT_DIR/result.json"
    exit 0 ;;
esac
count=0
for f in "$MERCURE_IN_DIR"/*.dcm; do
  cp "$f" "$MERCURE_OUT_DIR/" && count=$((count + 1))
done
printf '{"label": "%s", "files": %d}\n' "$(value label)" "$count" > "$MERCURE_OUT_DIR/result.json"
echo "copied $count files"
